-- Reconciliation with Cognito Sync (cognito_reconcile; core/reconcile.py compares, this reads and writes).

-- name: identities_in_warehouse
-- Every identity the warehouse knows in one pool (from datasets: one row per dataset seen).
select distinct identity_id
from ${schema}.datasets
where identity_pool_id = %s
order by identity_id;

-- name: records_of_identities
-- The current rows of a chunk of identities of one pool; the IN list is filled with one bound
-- placeholder per identity by ReportingSql.records_of_identities.
select
    identity_id,
    dataset_name,
    record_key,
    record_value,
    sync_count,
    last_modified_at,
    is_deleted,
    is_value_cut,
    value_bytes
from ${schema}.records
where identity_pool_id = %s
    and identity_id in (${identity_list})
order by identity_id, dataset_name, record_key;

-- name: datasets_of_identities
-- The datasets rows of a chunk of identities of one pool (compared with Cognito's Dataset
-- descriptions); the IN list is filled like records_of_identities'.
select
    identity_id,
    dataset_name,
    last_modified_at,
    is_deleted,
    live_record_count
from ${schema}.datasets
where identity_pool_id = %s
    and identity_id in (${identity_list})
order by identity_id, dataset_name;

-- name: insert_reconciliation_result
insert into ${schema}.reconciliation_results (
    run_id, checked_at, identity_pool_id, identity_id, dataset_name, record_key, kind, detail,
    cognito_sync_count, warehouse_sync_count
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: delete_reconciliation_run
-- A retried run replaces its own rows (idempotent).
delete from ${schema}.reconciliation_results where run_id = %s;

-- name: delete_reconciliation_summary
delete from ${schema}.reconciliation_runs where run_id = %s;

-- name: insert_reconciliation_run
insert into ${schema}.reconciliation_runs (
    run_id, checked_at, identity_pools, identities, keys_checked, in_flight, mismatches, missing, extra,
    stale_value, wrong_delete_state, unknown_identity, settle_seconds, sample_size, max_mismatches, passed
) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

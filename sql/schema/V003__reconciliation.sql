-- V003: reconciliation with Cognito Sync (cognito_reconcile): one row per run, one row per mismatch found.
-- Mismatch rows never hold record values (only sync counts and a description), so the table can be
-- shown to people who may not read the data itself.

create table if not exists ${schema}.reconciliation_runs (
    run_id varchar(256) not null,
    checked_at timestamp not null,
    identity_pools integer not null,
    identities integer not null,
    keys_checked bigint not null,
    in_flight bigint not null,
    mismatches bigint not null,
    missing bigint not null,
    extra bigint not null,
    stale_value bigint not null,
    wrong_delete_state bigint not null,
    settle_seconds integer not null,
    sample_size integer,
    max_mismatches bigint not null,
    passed boolean not null,
    primary key (run_id)
) ${attributes_reconciliation_runs};

create table if not exists ${schema}.reconciliation_results (
    run_id varchar(256) not null,
    checked_at timestamp not null,
    identity_pool_id varchar(64) not null,
    identity_id varchar(64) not null,
    dataset_name varchar(128) not null,
    record_key varchar(4096),
    kind varchar(32) not null,
    detail varchar(4096) not null,
    cognito_sync_count bigint,
    warehouse_sync_count bigint
) ${attributes_reconciliation_results};

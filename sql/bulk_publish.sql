-- bulk_publish_runs: one row per attempt, written by cognito_bulk_publish through
-- Warehouse.record_bulk_publish_attempt (an idempotent upsert by attempt_id).

-- name: lock_bulk_publish_runs
-- First statement of the writer's transaction: the mapped per-pool tasks write at once, and two overlapping
-- transactions that both read (MERGE) and write bulk_publish_runs are not serializable (Redshift: error 1023).
-- The second waits here, then takes its snapshot after the first committed. LOCK t (Redshift has no lock modes).
lock table ${schema}.bulk_publish_runs;

-- name: create_stage_bulk_publish
create temp table stg_bulk_publish (
    attempt_id varchar(256) not null,
    identity_pool_id varchar(64) not null,
    requested_at timestamp not null,
    decision varchar(64) not null,
    status varchar(32) not null,
    started_at timestamp,
    completed_at timestamp,
    failure_message varchar(4096),
    next_eligible_at timestamp,
    dag_run_id varchar(256),
    reason varchar(1024)
) ${attributes_stg_rejects};

-- name: insert_stage_bulk_publish
insert into stg_bulk_publish (
    attempt_id, identity_pool_id, requested_at, decision, status, started_at, completed_at, failure_message,
    next_eligible_at, dag_run_id, reason
) values (
    %s, %s, cast(%s as timestamp), %s, %s, cast(%s as timestamp), cast(%s as timestamp), %s,
    cast(%s as timestamp), %s, %s
);

-- name: merge_bulk_publish
-- The time (at) is a literal (core/sql_text.timestamp_literal): Redshift binds parameters only in
-- SELECT, INSERT, UPDATE and DELETE (PREPARE), so a MERGE takes none.
merge into ${schema}.bulk_publish_runs
using stg_bulk_publish as a
on bulk_publish_runs.attempt_id = a.attempt_id
when matched then update set
    identity_pool_id = a.identity_pool_id,
    requested_at = a.requested_at,
    decision = a.decision,
    status = a.status,
    started_at = a.started_at,
    completed_at = a.completed_at,
    failure_message = a.failure_message,
    next_eligible_at = a.next_eligible_at,
    dag_run_id = a.dag_run_id,
    reason = a.reason,
    updated_at = cast(${at} as timestamp)
when not matched then insert (
    attempt_id, identity_pool_id, requested_at, decision, status, started_at, completed_at, failure_message,
    next_eligible_at, dag_run_id, reason, updated_at
) values (
    a.attempt_id, a.identity_pool_id, a.requested_at, a.decision, a.status, a.started_at, a.completed_at,
    a.failure_message, a.next_eligible_at, a.dag_run_id, a.reason, cast(${at} as timestamp)
);

-- name: drop_stage_bulk_publish
drop table if exists stg_bulk_publish;

-- name: bulk_publish_attempts
-- A pool's attempts, newest first. The limit is an integer the code validated and placed in the text: no
-- statement binds LIMIT/OFFSET (redshift-connector binds on the server, and Redshift refuses a bound LIMIT:
-- aws/amazon-redshift-python-driver#24).
select
    attempt_id, identity_pool_id, requested_at, decision, status, started_at, completed_at, failure_message,
    next_eligible_at, dag_run_id, reason, updated_at
from ${schema}.bulk_publish_runs
where identity_pool_id = %s
order by requested_at desc, attempt_id desc
limit ${limit};

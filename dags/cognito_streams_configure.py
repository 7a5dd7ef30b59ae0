"""
### cognito_streams_configure

Keeps Amazon Cognito Streams configured and healthy for every identity pool in the
`cognito_pipeline` Variable, hourly and on demand.

1. **ensure_stream** — the Kinesis stream exists, ACTIVE, with `stream_shards` shards (created if
   missing; a different shard count is reported, and changed only with the `reshard` param, in steps
   of at most double or half as Kinesis requires; an on-demand stream is left to Kinesis).
2. **ensure_publish_role** — with `manage_publish_role: true`, the role that lets Cognito Sync put
   records is created with its permissions boundary (trust: `cognito-sync.amazonaws.com` only, plus
   the opt-in `publish_role_trust_condition`; PutRecord/PutRecords on this one stream) and its inline
   policy rewritten if it drifted; a changed trust policy is reported (`drifted`), never rewritten.
   Otherwise it is validated.
3. **configure_pools** — each pool's CognitoStreams (stream, role, ENABLED) by read-modify-write that
   keeps its PushSync; pools already right are not written (logged `unchanged`). Drift (another
   stream/role, `StreamingStatus=DISABLED` with its `DisabledReason`) is repaired when the cause is
   fixed.
4. **backfill_reenabled_pools** — pools that had streaming off missed changes: a
   `cognito_bulk_publish` run is triggered for them.
5. **check_pools** — red when any pool could not be made right, with the reason per pool.

Backfills are refused (`allowed_run_types`): it configures the present.

**When it is red**: read `check_pools`' log. Typical causes: the role does not trust
`cognito-sync.amazonaws.com` or lacks `kinesis:PutRecord` on the stream (fix the role, or set
`manage_publish_role`); the role's trust changed (other principals, a missing opt-in condition) or it
lacks its permissions boundary, which an administrator fixes; the boundary policy does not exist yet;
an identity pool id that does not exist; a stream stuck in a non-ACTIVE state.
Rerun the DAG after fixing; it is idempotent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

from cognito_streams.dag_defaults import NO_BACKFILL, default_args

BULK_PUBLISH_DAG_ID = "cognito_bulk_publish"


@dag(
    dag_id="cognito_streams_configure",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "configuration"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=1)),
    params={
        "reshard": Param(
            False, type="boolean", description="Change the stream's shard count to `stream_shards` if it differs."
        ),
        "backfill_reenabled": Param(
            True, type="boolean", description="Trigger a bulk publish for pools whose streaming was re-enabled."
        ),
    },
)
def cognito_streams_configure() -> None:
    """Stream, role and per-pool Cognito Streams settings, idempotently (see doc_md)."""

    @task
    def ensure_stream(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from cognito_streams.configure import tasks

        return tasks.ensure_stream(params)

    @task
    def ensure_publish_role() -> dict[str, Any]:
        from cognito_streams.configure import tasks

        return tasks.ensure_publish_role()

    @task
    def configure_pools() -> dict[str, Any]:
        from cognito_streams.configure import tasks

        return tasks.configure_pools()

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def pools_to_backfill(summary: Any, params: dict[str, Any] | None = None) -> dict[str, Any] | bool:
        from cognito_streams.configure import tasks

        return tasks.pools_to_backfill(summary, params)

    # Runs whatever happened upstream: without their results the pools' state is unknown.
    @task(trigger_rule="all_done")
    def check_pools(summary: Any, role: Any) -> dict[str, Any]:
        from cognito_streams.configure import tasks

        return tasks.check_pools(summary, role)

    stream = ensure_stream()
    role = ensure_publish_role()
    summary = configure_pools()
    stream >> role >> summary
    backfill = pools_to_backfill(summary)
    # conf=XComArg: the trigger runs after pools_to_backfill and gets its pool list.
    TriggerDagRunOperator(
        task_id="backfill_reenabled_pools",
        trigger_dag_id=BULK_PUBLISH_DAG_ID,
        conf=backfill,  # type: ignore[arg-type]  # an XComArg is resolved to the dict at run time
        wait_for_completion=False,
    )
    check_pools(summary, role)


DAG = cognito_streams_configure()

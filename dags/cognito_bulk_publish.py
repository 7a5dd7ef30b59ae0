"""
### cognito_bulk_publish

Sends the current state of every dataset of each identity pool to the Cognito Streams Kinesis
stream (Cognito Sync's *bulk publish*), daily and on demand — the way to fill the warehouse the first
time, and to repair it after streaming was off or data expired from Kinesis.

One mapped task per pool (`bulk_publish`). Cognito allows one bulk publish in progress at a time and
one success per 24 hours; each task decides from `GetBulkPublishDetails` and the clock:

| situation | what the task does |
| --- | --- |
| never run; last FAILED; last success >= 24 h ago | starts one, then **defers** until it ends (no worker held) |
| one IN_PROGRESS | defers until it ends |
| last success < 24 h ago | succeeds without starting, giving the next eligible time (log, return value); |
| | with `wait_until_eligible`, defers until then and starts |
| streaming not ENABLED | fails with the DisabledReason |

Every attempt and outcome is a row of `bulk_publish_runs` in the warehouse, so loaders and analysts
know which windows contain resent data (duplicates are absorbed by the loader's merge).

**Params** (manual runs): `identity_pool_ids` (a subset; empty = all from the settings),
`wait_until_eligible` (backfill at an awkward time: wait for eligibility instead of skipping).

**Backfill**: Airflow's Backfill is refused (`allowed_run_types`): a bulk publish sends today's state
whatever the date. This DAG *is* the way to resend everything (first load, after an outage); to read the
stream again use `cognito_stream_to_s3` with `replay_from`, to reload landed days `cognito_s3_to_redshift`
with `from_day`/`to_day`.

**When it is red**: `FAILED: <message>` is Cognito's FailureMessage (often the stream or role is
broken: run `cognito_streams_configure`, then this DAG again). `cannot run: streaming is DISABLED` —
same remedy. `still IN_PROGRESS after ...` — the publish continues in Cognito; rerun to keep waiting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from cognito_streams.bulk_publish.operator import BulkPublishOperator
from cognito_streams.dag_defaults import NO_BACKFILL, default_args


@dag(
    dag_id="cognito_bulk_publish",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "resend"],
    default_args=default_args(retries=1, retry_delay=timedelta(minutes=5)),
    params={
        "identity_pool_ids": Param(
            [],
            type="array",
            items={"type": "string"},
            uniqueItems=True,
            description="Pools to publish; empty means every configured pool.",
        ),
        "wait_until_eligible": Param(
            False, type="boolean", description="If a pool succeeded less than 24 h ago, wait until eligible and start."
        ),
        "reason": Param("", type="string", description="Why this run was asked for (shown in the logs)."),
    },
)
def cognito_bulk_publish() -> None:
    """Bulk publish per identity pool within Cognito's limits (see doc_md)."""

    # The Params and settings are checked here first: a mistake fails at once, never retried.
    @task(retries=0)
    def pools_to_publish(params: dict[str, Any] | None = None) -> list[str]:
        from cognito_streams.bulk_publish import tasks

        return tasks.pools_to_publish(params)

    BulkPublishOperator.partial(
        task_id="bulk_publish",
        wait_until_eligible="{{ params.wait_until_eligible }}",
    ).expand(identity_pool_id=pools_to_publish())


DAG = cognito_bulk_publish()

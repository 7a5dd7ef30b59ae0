"""
### cognito_pipeline_health

The stall alarm, every few minutes (`[cognito_streams] health_schedule`, default every 2 minutes).

**check** looks at the data, not at DAG runs, so it works whatever triggers the landing (a cron or
events): for each open Kinesis shard, the oldest record after its checkpoint (one `GetRecords` of one
record); the landed batches not yet in `loaded_batches`; the last load. The pipeline is **stalled** when
records have waited in Kinesis, or landed and not loaded, for longer than `stall_alert_seconds` (setting,
default 600) with no batch of that shard landed, or no load, in that time. A backlog being worked off is
*behind*, not stalled.

Each check keeps its numbers in `health_samples` (the charts of Browse > Pipeline health: lag per shard,
backlog) and emits them as Airflow metrics (`cognito_streams.health.*`, docs/operations.md).

**When it is red**: the pipeline is stalled; the message names each problem and what to do, and the
alert (SNS, `[cognito_streams] alert_sns_topic_arn`) is sent when a stall starts, then once an hour while
it lasts; each check in between is red without a new alert. A check is never retried (the next one
runs on schedule). Red because the warehouse, S3 or Kinesis cannot be read: fix that connection.

Backfills are refused (a check looks at the present).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task
from airflow.sdk.configuration import conf

from cognito_streams.dag_defaults import NO_BACKFILL, default_args

# Config, not I/O: read from airflow.cfg / the environment when the file is parsed.
HEALTH_SCHEDULE = conf.get("cognito_streams", "health_schedule", fallback="*/2 * * * *")


@dag(
    dag_id="cognito_pipeline_health",
    schedule=HEALTH_SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "monitoring"],
    default_args=default_args(retries=0, retry_delay=timedelta(minutes=1)),
)
def cognito_pipeline_health() -> None:
    """The stall check (see doc_md)."""

    @task(execution_timeout=timedelta(minutes=5))
    def check() -> dict[str, Any]:
        from cognito_streams.report import tasks

        return tasks.check()

    check()


DAG = cognito_pipeline_health()

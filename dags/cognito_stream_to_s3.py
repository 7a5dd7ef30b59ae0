"""
### cognito_stream_to_s3

Reads the Cognito Streams Kinesis stream, decodes every sync record and lands it in S3 as Parquet
(changes, rejects, COPY manifests, a descriptor per batch; layout in `core/landing_format.py` and
docs/landing.md), then emits the `cognito_streams_landed_batches` Asset that schedules
`cognito_s3_to_redshift`.

Tasks:
- `plan_shards` lists the shards. A child shard is read only after its parents are drained (read and
  checkpointed to their end); closed, drained shards are no longer scheduled. A shard that left the
  stream before it was read to its end gets a task too, which fails (`MAY BE LOST`) until its
  checkpoint is deleted. For a replay, it rewinds the shards' checkpoints first.
- `land_shard` (one per readable shard) takes the shard's lease, reads from its checkpoint in
  bounded batches (settings `batch_max_*`, `run_max_*`; payload bodies count against
  `batch_max_bytes`), decodes, fetches `S3Url` payloads at once (or reads back the ones an earlier
  landing kept), writes the batch (descriptor last), then moves the checkpoint. Returns read = landed
  + rejected.
- `publish_landed` sums up the run and emits the Asset (with the descriptors' URIs) only when
  something landed; otherwise it skips, so the loader is not triggered for nothing.
- `check_shards` (beside `publish_landed`, not after it: the run ends, and the next one may start, one task
  start sooner) fails the run if the plan or a shard's landing task failed (the others' batches are still
  announced). A failed `publish_landed` fails the run by itself.

Bad records never stop a run: each is quarantined under `rejects/` with its raw bytes, Kinesis
coordinates and a reason. Checkpoints live in S3 (`_checkpoints/`), not in Airflow's database.

**Params** (manual runs): `replay_from` — a time within the stream's retention, as RFC 3339 with a UTC
offset (`2026-11-25T08:00:00Z`, `2026-11-25T10:00:00+02:00`; anything else is refused by the trigger form
and the REST API): the shards are re-read from then (Kinesis `AT_TIMESTAMP`) and the batches are marked
`replay` and named apart (the loader loads them; the older batches they land again are superseded by a
marker under `_superseded/`, nothing deleted); the loader absorbs the duplicates. `shards` — limit the run
to these shard ids (`shardId-` and 12 digits; lineage still applies: a named child whose parent is not
drained and not named, or a named shard already read to its end without `replay_from`, is refused with the
reason, rather than the run ending green having read nothing of it). A run whose Params cannot be used (a
`replay_from` outside the retention or in the future, an unknown shard, a bad `cognito_pipeline` Variable)
fails `plan_shards` at once, without retries, so it never holds the DAG's one run slot while scheduled
landings wait.

**Re-reading, not backfilling**: Airflow's Backfill is refused (`allowed_run_types`): a landing run reads
from the checkpoints, not a date interval, so a backfill would only land "whatever is new now" once per
interval. To read a past window again, trigger a run with `replay_from` (and `shards`); to have Cognito
send everything again, run `cognito_bulk_publish`.

**Schedule**: `[cognito_streams] landing_mode` in airflow.cfg (env `AIRFLOW__COGNITO_STREAMS__LANDING_MODE`):
- `schedule` (default): cron, `[cognito_streams] landing_schedule` (env
  `AIRFLOW__COGNITO_STREAMS__LANDING_SCHEDULE`), default every 5 minutes.
- `event`: a run starts when records arrive. The asset `cognito_streams_records_waiting` has an
  `AssetWatcher` whose trigger runs in the triggerer: it probes each shard after its checkpoint (one
  `GetRecords` of one record per shard per second at most, none while a landing task holds the shard) and
  fires once per burst. While nothing arrives no task instance starts. Needs a running triggerer.

**When it is red**:
- `MAY BE LOST` — records may have expired from Kinesis before they were landed: a shard unread for
  longer than the retention (with or without a position: idle, rewound, a child never read), or a
  shard that left the stream before its end. The message says which window; repair with
  `cognito_bulk_publish`, then a run with `replay_from` (or delete that shard's checkpoint object, as
  the message says). Nothing was skipped silently.
- `was changed by someone else` — another run took the shard meanwhile; nothing is lost (its batch
  is landed again by the owner). Check for overlapping manual runs.
- `is being read by ... until` in a replay — wait for that run (or its lease) to end, retry.
- `check_shards` lists the shards whose task failed: open that `land_shard` task's log.
- Anything about the Variable `cognito_pipeline`: fix the setting it names (Admin > Variables).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task
from airflow.sdk.configuration import conf

from cognito_streams.assets import LANDED_BATCHES
from cognito_streams.dag_defaults import NO_BACKFILL, default_args, user_errors
from cognito_streams.landing.mode import DEFAULT_SCHEDULE, landing_schedule, parse_landing_mode, parse_poll_seconds

# Config, not I/O: read from airflow.cfg / the environment when the file is parsed.
LANDING_MODE = parse_landing_mode(conf.get("cognito_streams", "landing_mode", fallback="schedule"))
LANDING_SCHEDULE = conf.get("cognito_streams", "landing_schedule", fallback=DEFAULT_SCHEDULE)
EVENT_POLL_SECONDS = parse_poll_seconds(conf.get("cognito_streams", "event_poll_seconds", fallback=None))
#: RFC 3339 date-time with a mandatory offset (what JSON Schema's date-time format means).
REPLAY_FROM_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
SHARD_ID_PATTERN = r"^shardId-[0-9]{12}$"


@dag(
    dag_id="cognito_stream_to_s3",
    schedule=landing_schedule(LANDING_MODE, LANDING_SCHEDULE, EVENT_POLL_SECONDS),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "ingestion", "replay"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=1), exponential_backoff=True),
    params={
        "replay_from": Param(
            None,
            type=["null", "string"],
            # Checked when the run is triggered (form and REST API). date-time is RFC 3339: the UTC offset is
            # required; the pattern says the same for checkers without RFC 3339 support.
            format="date-time",
            pattern=REPLAY_FROM_PATTERN,
            description=(
                "Manual replay: re-read the shards from this time, within the stream's retention. RFC 3339 with "
                "a UTC offset: 2026-11-25T08:00:00Z or 2026-11-25T10:00:00+02:00 (a time without Z or offset "
                "is refused)."
            ),
        ),
        "shards": Param(
            [],
            type="array",
            items={"type": "string", "pattern": SHARD_ID_PATTERN},
            uniqueItems=True,
            description="Only these shard ids (shardId- and 12 digits, e.g. shardId-000000000001); empty means all.",
        ),
    },
)
def cognito_stream_to_s3() -> None:
    """Kinesis -> S3 landing zone, one mapped task per readable shard (see doc_md)."""

    @task
    def plan_shards(params: dict[str, Any] | None = None, dag_run: Any = None) -> list[dict[str, Any]]:
        from cognito_streams.landing import tasks

        with user_errors():
            return tasks.plan(params or {}, dag_run.dag_id, dag_run.run_id)

    @task(map_index_template="{{ shard_id }}")
    def land_shard(shard: dict[str, Any], dag_run: Any = None) -> dict[str, Any]:
        from airflow.sdk import get_current_context

        from cognito_streams.landing import tasks

        get_current_context()["shard_id"] = shard["shard_id"]  # type: ignore[typeddict-unknown-key]
        return tasks.land_with_metrics(shard, dag_run.dag_id, dag_run.run_id)

    @task(outlets=[LANDED_BATCHES], trigger_rule=TriggerRule.ALL_DONE)
    def publish_landed(outcomes: Any, outlet_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from cognito_streams.landing import tasks

        extra = tasks.publish(list(outcomes or []))
        if extra is None:
            raise AirflowSkipException("nothing landed this run: the loader is not triggered")
        outlet_events[LANDED_BATCHES].extra = extra
        return extra

    # A verdict on this run's tasks, not a network call: retrying it cannot change it.
    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def check_shards(planned: Any, outcomes: Any, ti: Any = None, dag_run: Any = None) -> None:
        from cognito_streams.landing import tasks

        # This task runs whatever happened upstream, and as a last task of the DAG it decides the run's
        # state: a failed plan must fail it too, not only a failed shard. It runs beside publish_landed
        # (the run's other last task, whose own failure fails the run): the run ends one task start sooner,
        # and with max_active_runs=1 that is when the next landing run may start.
        tasks.check_shards(planned, outcomes, ti, dag_run.dag_id, dag_run.run_id)

    planned = plan_shards()
    outcomes = land_shard.expand(shard=planned)
    publish_landed(outcomes)
    check_shards(planned, outcomes)


DAG = cognito_stream_to_s3()

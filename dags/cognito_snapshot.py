"""
### cognito_snapshot

Loads Amazon Cognito Sync **directly**, without Cognito Streams, Kinesis or a bulk publish: walks every
identity of each pool, lands what it reads as batches of the landing contract (payload type `snapshot`)
and merges them into the warehouse under the same rules as the stream (latest wins; a snapshot never
brings back what a later change deleted). Optionally **exports** the current state for the move off
Cognito Sync (Parquet, and DynamoDB's "Import from S3" format): docs/migration.md.

Use it for a first load of a pool where streaming was never enabled (or cannot be), to repair after
streaming was off, or when a bulk publish is not allowed yet (one success per 24 hours). What a snapshot
guarantees (each dataset as of the moment it was read; with the stream running, both merge to the true
state) and what its rows hold: docs/semantics.md, "Snapshots".

Tasks:
- `check_params` — the Params, checked (a mistake fails here, not retried).
- `page_identities` — Cognito Identity `ListIdentities` (60 a page, one page after the other) into chunks of
  `snapshot_chunk_identities` identities in S3 (`snapshots/<snapshot id>/chunks/`), the durable cursor.
- `walk` — mapped over the chunks (at most `[core] max_map_length` tasks): per identity `ListDatasets`,
  `DescribeDataset` for a dataset the warehouse holds live and the listing lacks, `ListRecords` of every
  dataset (every page); lands one batch per `snapshot_batch_identities` identities, then moves the chunk's
  progress object; loads what it landed every two minutes and at its end (the loader's own code and
  lock), so the warehouse fills while the walk goes on. Throttling (`TooManyRequestsException`) backs
  off. The log shows identities done / total, rate, ETA.
- `load_snapshot` — loads whatever of the snapshot is not loaded yet (a batch a killed try landed), runs
  the data-quality checks, takes the export's watermark, and emits the `cognito_streams_warehouse_loaded`
  Asset.
- `export` (mapped like the walk) and `finish_export` — with Param `export`: `exports/<snapshot id>/`
  under the landing prefix; `export.json` is written last.

**Params**: `identity_pool_ids` (a subset of the configured pools; empty = all), `identities` (`"all"`, a
sample size such as `100`, or a list of identity ids of one pool), `export` (true/false).

**Backfill** is refused (Airflow says so in one line): a snapshot reads Cognito Sync as it is now, not a
date interval; trigger a run instead.

**Resuming**: a killed or failed task is retried (network errors) or cleared by you: it goes on from the
cursor in S3; identities read twice only land versions the loader absorbs. A new run is a new snapshot.
Progress of the latest snapshot: `snapshots/_latest.json` and the chunks' progress objects
(docs/operations.md, "Snapshots").

**When it is red**:
- `identity_pool_ids param names pools not in cognito_pipeline.identity_pool_ids` or `param identities ...` —
  fix the Params and trigger again.
- `walk` failed after its retries, e.g. `TooManyRequestsException` — Cognito Sync kept throttling: lower
  `snapshot_concurrency`, then clear the failed `walk` tasks (they resume from their cursor).
- `was moved by another task` — two runs or tasks walk the same chunk; let the other finish.
- `load_snapshot`: `is not walked to its end` — a walk task did not finish: clear it; `data-quality check(s)
  failed` or `COPY ... failed` — as for `cognito_s3_to_redshift` (docs/warehouse.md).
- `export`: `value_ref ... holds N bytes` — a cut value kept in the landing zone differs from the row:
  reload that batch, then clear `export`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from cognito_streams.assets import WAREHOUSE_LOADED
from cognito_streams.dag_defaults import NO_BACKFILL, default_args, user_errors

IDENTITY_ID = r"^[\w-]+:[0-9a-f-]+$"


@dag(
    dag_id="cognito_snapshot",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "snapshot", "migration"],
    # Retries are for the network: every task turns any other error into a failure without retries.
    default_args=default_args(retries=3, retry_delay=timedelta(minutes=1), exponential_backoff=True),
    params={
        "identity_pool_ids": Param(
            [],
            type="array",
            items={"type": "string"},
            uniqueItems=True,
            description="Pools to walk; empty means every configured pool.",
        ),
        "identities": Param(
            "all",
            anyOf=[
                {"type": "string", "enum": ["all"]},
                {"type": "integer", "minimum": 1},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": IDENTITY_ID, "maxLength": 55},
                    "minItems": 1,
                    "uniqueItems": True,
                },
            ],
            description='"all", a sample size (e.g. 100), or a list of identity ids of one pool.',
        ),
        "export": Param(False, type="boolean", description="Also export the current state (docs/migration.md)."),
    },
)
def cognito_snapshot() -> None:
    """Cognito Sync -> snapshot batches -> warehouse, and the export (see doc_md)."""

    # The Params' checks first: a user's mistake fails at once and is never retried.
    @task(retries=0)
    def check_params(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        from cognito_streams.snapshot import tasks

        with user_errors():
            return tasks.parse_params(params, dag_run.run_id)

    @task
    def page_identities(run: Any, dag_run: Any = None) -> list[dict[str, Any]]:
        from cognito_streams.snapshot import tasks

        with tasks.network_retries_only():
            return tasks.page(run, dag_run.run_id)

    @task(map_index_template="{{ chunks }}")
    def walk(unit: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk import get_current_context

        from cognito_streams.snapshot import tasks

        get_current_context()["chunks"] = tasks.unit_label(unit)  # type: ignore[typeddict-unknown-key]
        with tasks.network_retries_only():
            return tasks.walk(unit)

    @task(outlets=[WAREHOUSE_LOADED])
    def load_snapshot(run: Any, walked: Any, outlet_events: Any = None) -> dict[str, Any]:
        from cognito_streams.snapshot import tasks

        with tasks.network_retries_only():
            out = tasks.load(run)
        outlet_events[WAREHOUSE_LOADED].extra = {"mode": "snapshot", "snapshot_id": run["snapshot_id"], **out["load"]}
        return out

    @task(map_index_template="{{ chunks }}")
    def export(run: Any, unit: dict[str, Any], loaded: Any) -> dict[str, Any]:
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowSkipException

        from cognito_streams.snapshot import tasks

        get_current_context()["chunks"] = tasks.unit_label(unit)  # type: ignore[typeddict-unknown-key]

        if not run["export"]:
            raise AirflowSkipException("no export asked for (Param export is false)")
        with tasks.network_retries_only():
            return tasks.export(unit)

    @task
    def finish_export(run: Any, parts: Any, loaded: Any) -> dict[str, Any]:
        from cognito_streams.snapshot import tasks

        with tasks.network_retries_only():
            return tasks.finish_export(run, list(parts or []), loaded)

    run = check_params()
    units = page_identities(run)
    walked = walk.expand(unit=units)
    loaded = load_snapshot(run, walked)
    parts = export.partial(run=run, loaded=loaded).expand(unit=units)
    finish_export(run, parts, loaded)


DAG = cognito_snapshot()

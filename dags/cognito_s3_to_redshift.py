"""
### cognito_s3_to_redshift

Turns the landing zone into the tables analysts query (schema `cognito_sync` by default; see
docs/warehouse.md), idempotently: the warehouse ends in Cognito Sync's true state whatever arrives
twice, late or out of order (rules: docs/semantics.md).

Runs when `cognito_stream_to_s3` announces landed batches (Asset `cognito_streams_landed_batches`), and
by hand to reload. One run at a time.

1. **check_params** — checks the Params (below) and the settings, and chooses the branch: `load` (default)
   or `rebuild`. A mistake (a reversed day range, `force` without days, `rebuild` with days, a bad
   `cognito_pipeline` Variable) fails it at once, without retries, with the message: the run ends in seconds
   and never holds the run slot while loads wait.
2. **load_batches** — applies the `sql/schema/V*.sql` migrations not yet in `schema_migrations`, waits for
   `min_load_interval_seconds` since the last load if need be, then finds the batch descriptors not in
   `loaded_batches`, loads them at most
   `load_max_files_per_batch` files per transaction, and lists again until caught up. Per transaction:
   COPY into a stage (Redshift: one server-side COPY per stage table from a manifest of the whole
   transaction; PostgreSQL: streamed), staged rows checked
   against the manifests' `record_count` and the landing contract, dedupe, new versions into
   `record_changes`, dataset deletes, MERGE of `records` (newer versions only; removes and dataset
   deletes leave tombstones) and `datasets`, quarantined records into `rejected_records`, files into
   `loaded_files`/`loaded_batches`. All or nothing.
3. **rebuild_state** — applies pending migrations, then rebuilds `records` and `datasets` from
   `record_changes` + `dataset_deletes`.
4. **quality_checks** — every table's grain (Redshift enforces no key), merge keys not null; staged rows =
   manifests' counts; datasets' live counts = records. Red with the numbers when one fails.
5. **announce_loaded** — emits `cognito_streams_warehouse_loaded` (counts in the event's extra) when the
   run loaded or rebuilt something; skipped otherwise.
6. **check_failed_batches** — red when `load_batches` set batches aside (a batch whose descriptor, COPY
   or checks failed is recorded in `failed_batches` while every other batch loads; later runs try it
   again), naming each batch, its error and the repair.

**Params** (manual runs): `mode` (`load` | `rebuild`); `from_day`/`to_day` (YYYY-MM-DD, the landing
`dt=` partition; other forms are refused by the trigger form and the REST API) to load only that range;
`force` to merge a day range again even if loaded (harmless: nothing changes unless the rules changed).

**Reloading, not backfilling**: Airflow refuses a Backfill of this DAG (it runs on an Asset, and
`allowed_run_types` leaves backfills out). To merge landed days again: `from_day`/`to_day` with `force`;
to rebuild the tables from the history: `mode: rebuild`; to read the stream again:
`cognito_stream_to_s3` with `replay_from`.

After a load it keeps the load's duration and freshness (change made → loaded, p50/p95) in
`health_samples` and emits them as Airflow metrics (`cognito_streams.loading.*`).

**When it is red** (details: docs/warehouse.md, "When the loader is red"):
- `check_failed_batches`: `N landed batch(es) could not be loaded and were set aside` — each batch with its
  error: `COPY ... failed` (the file, line and reason; Redshift: from `sys_load_error_detail`), `staged rows
  do not match the manifests` / `break the landing contract` (a writer bug), or a malformed descriptor.
  Everything else was loaded. Fix the cause (usually re-land the batch); the next run loads it
  (docs/operations.md, "A batch the loader set aside").
- `no landed batch for from_day ...` — a manual run's day range holds no landed batch (the days are landing
  days, the `dt=` partition): fix `from_day`/`to_day`.
- `data-quality check(s) failed` — the numbers and an example are in the message; run a `rebuild`.
- `schema ... changed after it was applied` — an applied migration file was edited: restore it and put
  the change in a new `V<NNN>` file.
- Anything about the Variable `cognito_pipeline` or a connection: fix the setting it names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task

from cognito_streams.assets import LANDED_BATCHES, WAREHOUSE_LOADED
from cognito_streams.dag_defaults import NO_BACKFILL, default_args, user_errors

DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


@dag(
    dag_id="cognito_s3_to_redshift",
    schedule=[LANDED_BATCHES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    allowed_run_types=NO_BACKFILL,
    doc_md=__doc__,
    tags=["cognito-streams", "warehouse", "reload"],
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=2), exponential_backoff=True),
    params={
        "mode": Param(
            "load",
            enum=["load", "rebuild"],
            description="load: landed batches (new, or the day range); rebuild: records and datasets from history.",
        ),
        "from_day": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DAY_PATTERN,
            description="First landing day to load, YYYY-MM-DD (UTC), e.g. 2026-03-01; at most to_day.",
        ),
        "to_day": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=DAY_PATTERN,
            description="Last landing day to load, YYYY-MM-DD (UTC); at least from_day.",
        ),
        "force": Param(False, type="boolean", description="Merge the day range again, even batches already loaded."),
    },
)
def cognito_s3_to_redshift() -> None:
    """S3 landing zone -> warehouse, idempotent merges (see doc_md)."""

    # The Params' cross-field checks first: a user's mistake fails at once and is never retried. The same
    # task chooses the branch: every task started costs seconds on a change's way to the warehouse.
    @task.branch(retries=0)
    def check_params(params: dict[str, Any] | None = None) -> str:
        from cognito_streams.loading import tasks

        with user_errors():
            return tasks.check_and_choose(params)

    @task
    def load_batches(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from cognito_streams.loading import tasks

        return tasks.load_batches(params)

    @task
    def rebuild_state() -> dict[str, Any]:
        from cognito_streams.loading import tasks

        return tasks.rebuild()

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def quality_checks(dag_run: Any = None) -> dict[str, int]:
        from cognito_streams.loading import tasks

        # From when the run was queued, not from its start: clearing a task restarts the run, and a
        # cleared check must still judge what this run loaded (its load_batches does not load it again).
        return tasks.check(dag_run.run_after or dag_run.start_date)

    @task(outlets=[WAREHOUSE_LOADED])
    def announce_loaded(ti: Any = None, outlet_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from cognito_streams.loading import tasks

        extra = tasks.announcement(ti.xcom_pull(task_ids=tasks.LOAD_TASK), ti.xcom_pull(task_ids=tasks.REBUILD_TASK))
        if extra is None:
            raise AirflowSkipException("nothing was loaded by this run: no warehouse event")
        outlet_events[WAREHOUSE_LOADED].extra = extra
        return extra

    @task
    def check_failed_batches(ti: Any = None) -> int:
        from cognito_streams.loading import tasks

        # A run that set batches aside is red, after the checks and the announcement of what it did load.
        return tasks.check_failed(ti.xcom_pull(task_ids=tasks.LOAD_TASK))

    chosen = check_params()
    loaded = load_batches()
    chosen >> [loaded, rebuild_state()] >> quality_checks() >> announce_loaded()
    loaded >> check_failed_batches()


DAG = cognito_s3_to_redshift()

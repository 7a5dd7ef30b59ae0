"""The work of each ``cognito_s3_to_redshift`` task, so that the DAG file only wires them.

The loading machinery (warehouse drivers, pyarrow) is imported only by the functions that touch the
warehouse: every task process of the DAG imports this module, and ``check_params`` and
``announce_loaded`` never do (0.3-0.6 s of each such task process on the 2-core machine, on every
change's way into the warehouse; docs/performance.md).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from cognito_streams.core.loading.params import LoadParams
from cognito_streams.settings import load_settings

log = logging.getLogger(__name__)

LOAD_TASK = "load_batches"
#: Where load()'s return value lists the batches set aside (FailedBatch.as_dict each).
FAILED_KEY = "failed_batches"
REBUILD_TASK = "rebuild_state"


def choose(params: dict[str, Any] | None) -> str:
    """The task to run for these params (validated here, before anything is written)."""
    return REBUILD_TASK if LoadParams.parse(params).mode == "rebuild" else LOAD_TASK


def check_and_choose(params: dict[str, Any] | None) -> str:
    """The ``check_params`` task: the settings and the Params checked (a mistake raises ``ValueError``, which
    the task turns into a failure without retries), and the branch to follow (``load_batches`` or
    ``rebuild_state``). Pure: nothing is read from the warehouse or S3, so it is cheap on every run."""
    load_settings()
    return choose(params)


def _schema_ready(warehouse: Any) -> None:
    """The migrations not applied yet, applied: the first step of a load or a rebuild, not a task of its own,
    since every task the loader starts adds seconds to each change's way into the warehouse."""
    applied = warehouse.ensure_schema()
    if applied:
        log.info("schema migrations applied: %s", ", ".join(applied))


def load(params: dict[str, Any] | None) -> dict[str, Any]:
    """Load the landed batches not yet loaded (or the day range, forced), after applying the schema's pending
    migrations; returns the counts and, under ``failed_batches``, the batches set aside (the
    ``check_failed_batches`` task fails the run on them, after the checks and the announcement of what was
    loaded)."""
    from cognito_streams.landing_zone import load as loader
    from cognito_streams.loading.pace import last_load_at, wait_for_load_slot
    from cognito_streams.warehouse.connect import open_warehouse

    p = LoadParams.parse(params)
    settings = load_settings()
    # Regular loads only are paced: a manual backfill or forced reload is not held back.
    paced = not (p.day_from or p.day_to or p.force) and settings.min_load_interval_seconds > 0
    with open_warehouse(settings) as wh:
        _schema_ready(wh)
        last = last_load_at(wh) if paced else None
    if paced:
        wait_for_load_slot(settings, last)
    report = loader.load_landing_zone(settings, day_from=p.day_from, day_to=p.day_to, force=p.force)
    return {**report.as_dict(), FAILED_KEY: [f.as_dict() for f in report.failed]}


def load_batches(params: dict[str, Any] | None) -> dict[str, Any]:
    """The ``load_batches`` task: :func:`load`, then, when it loaded batches, its freshness and duration kept
    as a health sample and metrics under ``health`` (:func:`cognito_streams.monitoring.samples.record_load`)."""
    import time

    from cognito_streams.monitoring.samples import record_load
    from cognito_streams.warehouse.connect import open_warehouse

    started_at, t0 = datetime.now(UTC), time.monotonic()
    loaded = load(params)
    if loaded.get("batches"):
        settings = load_settings()
        with open_warehouse(settings) as warehouse:
            loaded["health"] = record_load(
                settings, warehouse, started_at, time.monotonic() - t0, int(loaded["batches"])
            )
    return loaded


def check_failed(loaded: dict[str, Any] | None) -> int:
    """Fail the task, naming each batch set aside by the load, its error and the repair; returns 0 when none
    was. Not retried (AirflowFailException): it reports what the load did, and a retry would report the same;
    the next run of the DAG tries the batches again."""
    from airflow.sdk.exceptions import AirflowFailException

    from cognito_streams.warehouse.models import FailedBatch, batches_failed_error

    failed = [FailedBatch.from_dict(f) for f in (loaded or {}).get(FAILED_KEY, [])]
    if failed:
        err = batches_failed_error(failed, load_settings().warehouse_schema)
        raise AirflowFailException(f"{type(err).__name__}: {err}") from err
    return 0


def rebuild() -> dict[str, Any]:
    """Rebuild records and datasets from the history (after applying the schema's pending migrations);
    returns the counts."""
    from cognito_streams.landing_zone import load as loader
    from cognito_streams.warehouse.connect import open_warehouse

    settings = load_settings()
    with open_warehouse(settings) as wh:
        _schema_ready(wh)
    return vars(loader.rebuild_current_state(settings))


def check(since: datetime) -> dict[str, int]:
    """Run the data-quality checks on what was loaded since ``since`` (raises with the numbers when one
    fails); returns ``{check: failing rows}``."""
    from cognito_streams.landing_zone import load as loader

    return {r.name: r.failing for r in loader.check_quality(load_settings(), since)}


def announcement(loaded: dict[str, Any] | None, rebuilt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The warehouse event's extra, or None when this run changed nothing (then no event)."""
    if rebuilt is not None:
        return {"mode": "rebuild", **rebuilt}
    if loaded and loaded.get("batches"):
        return {"mode": "load", **{k: v for k, v in loaded.items() if k != FAILED_KEY}}
    return None

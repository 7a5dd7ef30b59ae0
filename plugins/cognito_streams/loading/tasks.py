"""The work of each ``cognito_s3_to_redshift`` task, so that the DAG file only wires them."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from cognito_streams.loading import run
from cognito_streams.loading.params import LoadParams
from cognito_streams.settings import load_settings

log = logging.getLogger(__name__)

LOAD_TASK = "load_batches"
REBUILD_TASK = "rebuild_state"


def ensure_schema() -> list[str]:
    """Create or upgrade the warehouse schema (migrations applied now)."""
    return run.ensure_schema(load_settings())


def choose(params: dict[str, Any] | None) -> str:
    """The task to run for these params (validated here, before anything is written)."""
    return REBUILD_TASK if LoadParams.parse(params).mode == "rebuild" else LOAD_TASK


def load(params: dict[str, Any] | None) -> dict[str, Any]:
    """Load the landed batches not yet loaded (or the day range, forced); returns the counts."""
    p = LoadParams.parse(params)
    settings = load_settings()
    if not (p.day_from or p.day_to or p.force):
        # Regular loads only: a manual backfill or forced reload is not held back.
        from cognito_streams.loading.connect import open_warehouse
        from cognito_streams.loading.pace import last_load_at, wait_for_load_slot

        if settings.min_load_interval_seconds > 0:
            with open_warehouse(settings) as wh:
                last = last_load_at(wh)
            wait_for_load_slot(settings, last)
    return run.load_landing_zone(settings, day_from=p.day_from, day_to=p.day_to, force=p.force).as_dict()


def rebuild() -> dict[str, Any]:
    """Rebuild records and datasets from the history; returns the counts."""
    return vars(run.rebuild_current_state(load_settings()))


def check(since: datetime) -> dict[str, int]:
    """Run the data-quality checks on what was loaded since ``since`` (raises with the numbers when one
    fails); returns ``{check: failing rows}``."""
    return {r.name: r.failing for r in run.check_quality(load_settings(), since)}


def announcement(loaded: dict[str, Any] | None, rebuilt: dict[str, Any] | None) -> dict[str, Any] | None:
    """The warehouse event's extra, or None when this run changed nothing (then no event)."""
    if rebuilt is not None:
        return {"mode": "rebuild", **rebuilt}
    if loaded and loaded.get("batches"):
        return {"mode": "load", **loaded}
    return None

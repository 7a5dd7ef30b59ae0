"""The loader's pause before a load, so that loads start at most once per ``min_load_interval_seconds``
(:mod:`cognito_streams.core.loading.pace`). The last load's time is the warehouse's own record
(``max(loaded_at)`` of ``loaded_batches``), so manual runs and retries count too."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cognito_streams.core.loading.pace import load_wait_seconds
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)


def last_load_at(warehouse: Warehouse) -> datetime | None:
    """When the last load started (UTC), or None before the first one."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    with warehouse.transaction() as cur:
        cur.execute(sql.report("last_load"))
        row = cur.fetchone()
    last = row[0] if row else None
    if isinstance(last, datetime) and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return last


def wait_for_load_slot(
    settings: PipelineSettings,
    last_load: datetime | None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] | None = None,
) -> float:
    """Sleep until ``min_load_interval_seconds`` after ``last_load`` (the last load's start, from
    :func:`last_load_at`); returns the seconds waited."""
    interval = settings.min_load_interval_seconds
    wait = load_wait_seconds(last_load, now(), interval)
    if wait > 0:
        log.info(
            "Waiting %.1f s: the last load started less than min_load_interval_seconds (%g s) ago; what lands "
            "meanwhile is loaded too",
            wait,
            interval,
        )
        (sleep or time.sleep)(wait)
    return wait

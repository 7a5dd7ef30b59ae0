"""The ``health_samples`` rows: what the stall check (``report.check``) and each load of
``cognito_s3_to_redshift`` (:func:`record_load`) keep of the pipeline over time, for the report's charts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.monitoring import metrics
from cognito_streams.monitoring.state import LOAD_SECONDS_METRIC, utc_naive
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Cursor, Warehouse, insert_rows

#: health_samples rows older than this are deleted by each check.
KEEP_SAMPLES = timedelta(days=14)
LOAD_SOURCE = "cognito_s3_to_redshift"


def write_samples(
    warehouse: Warehouse, at: datetime, rows: Sequence[tuple[str, str, float]], source: str, *, prune: bool = False
) -> None:
    """Insert one check's (or load's) samples; with ``prune``, delete those older than ``KEEP_SAMPLES``."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    stamp = utc_naive(at)

    def write(cur: Cursor) -> None:
        insert_rows(cur, sql.report("insert_health_sample"), [(stamp, m, s, float(v), source) for m, s, v in rows])
        if prune:
            cur.execute(sql.report("prune_health_samples"), (utc_naive(at - KEEP_SAMPLES),))

    warehouse.write(f"{len(rows)} health sample(s) from {source}", sql.report("lock_health_samples"), write)


def record_load(
    settings: PipelineSettings, warehouse: Warehouse, started_at: datetime, seconds: float, batches: int
) -> dict[str, Any]:
    """After a load: the freshness of the versions it added, its duration, as samples and metrics."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    with warehouse.transaction() as cur:
        cur.execute(sql.report("health_freshness_of_load"), (utc_naive(started_at),))
        changes, p50, p95 = cur.fetchone()
    freshness = {
        "changes": int(changes or 0),
        "p50_seconds": None if p50 is None else round(float(p50), 3),
        "p95_seconds": None if p95 is None else round(float(p95), 3),
    }
    rows: list[tuple[str, str, float]] = [(LOAD_SECONDS_METRIC, "", seconds)]
    rows += [(f"freshness_{k}", "", float(v)) for k, v in freshness.items() if k != "changes" and v is not None]
    write_samples(warehouse, datetime.now(UTC), rows, LOAD_SOURCE)
    metrics.loaded(seconds, batches, freshness)
    return {"load_seconds": round(seconds, 3), **freshness}

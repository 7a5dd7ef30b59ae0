"""Gather the pipeline-health report live: the pipeline's state (``monitoring.state``: checkpoints, a
one-record peek at Kinesis per open shard, the landed batches not yet loaded) and the warehouse's tables
(last load, freshness per load, throughput, rejects, bulk publishes, reconciliation, the ``health_samples``
history), and the latest snapshot's progress.

Used by the UI plugin (each page view, behind a short cache) and by ``report.html_report``. Reads only:
nothing here writes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.core.report.health import (
    Backlog,
    HealthReport,
    Series,
    ShardState,
    assess,
)
from cognito_streams.core.report.html import BULK_PUBLISH_COLUMNS
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.monitoring.state import (
    BACKLOG_METRIC,
    LAG_METRIC,
    LOAD_SECONDS_METRIC,
    PipelineState,
    pipeline_state,
    utc_aware,
    utc_naive,
)
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: Points per chart line at most (longer histories are reduced to the maximum of each time bucket).
MAX_POINTS = 360

T = TypeVar("T")


def _downsample(points: list[tuple[datetime, float]], limit: int = MAX_POINTS) -> list[tuple[datetime, float]]:
    """At most ``limit`` points: the maximum of each run of equal length (peaks stay visible)."""
    if len(points) <= limit:
        return points
    size = -(-len(points) // limit)
    return [max(points[i : i + size], key=lambda p: p[1]) for i in range(0, len(points), size)]


def _guard(errors: dict[str, str], source: str, fn: Callable[[], T], default: T) -> T:
    """Run one source's read; a failure is shown on the page (with its reason) instead of the whole page
    failing: the other numbers are still worth seeing."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - reported in the page and the JSON under errors.<source>
        log.warning("pipeline health: %s could not be read: %s", source, err)
        errors[source] = f"{type(err).__name__}: {str(err)[:300]}"
        return default


def gather(
    settings: PipelineSettings,
    warehouse: Warehouse,
    s3: Any,
    kinesis: Any,
    *,
    now: datetime | None = None,
    window_hours: float = 24.0,
) -> HealthReport:
    """The whole health report (page and JSON). A source that cannot be read is named in ``errors``."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=window_hours)
    errors: dict[str, str] = {}
    state = _guard(errors, "pipeline", lambda: pipeline_state(settings, warehouse, s3, kinesis, now=now), None)
    if state is None:
        assessment = assess(now, [], Backlog(), None, settings.stall_alert_seconds)
        state = PipelineState(now, [], Backlog(), {}, assessment)
    report = HealthReport(
        generated_at=now,
        stall_alert_seconds=settings.stall_alert_seconds,
        assessment=state.assessment,
        shards=state.shards,
        backlog=state.backlog,
        last_load=state.last_load,
        window_hours=window_hours,
    )
    report.as_of["kinesis"] = now if "pipeline" not in errors else None
    sql = ReportingSql(warehouse.schema, warehouse.engine)

    def warehouse_numbers() -> None:
        with warehouse.transaction() as cur:
            cur.execute(sql.report("health_freshness_per_load"), (utc_naive(since),))
            per_load = [(utc_aware(at), int(n), float(p50), float(p95)) for at, n, p50, p95 in cur.fetchall()]
            cur.execute(sql.report("health_throughput_per_minute"), (utc_naive(since),))
            throughput = [(utc_aware(t), int(r), int(ld), int(rj), int(b)) for t, r, ld, rj, b in cur.fetchall()]
            cur.execute(sql.report("health_rejects_per_hour"), (utc_naive(since),))
            rejects_hourly = [(utc_aware(t), str(reason), int(n)) for t, reason, n in cur.fetchall()]
            cur.execute(sql.report("rejects_by_reason"))
            report.rejects_by_reason = {str(r): int(n) for r, n in cur.fetchall()}
            cur.execute(sql.report("bulk_publish_history"))
            report.bulk_publish = [
                {k: utc_aware(v) for k, v in zip(BULK_PUBLISH_COLUMNS, row, strict=True)} for row in cur.fetchall()[:20]
            ]
            cur.execute(sql.report("health_latest_reconciliation"))
            row = cur.fetchone()
            cur.execute(sql.report("health_samples_since"), (utc_naive(since),))
            samples = [(utc_aware(t), str(m), str(s), float(v)) for t, m, s, v in cur.fetchall()]
        report.as_of["warehouse"] = datetime.now(UTC)
        if per_load:
            at, changes, p50, p95 = per_load[-1]
            report.freshness = {"loaded_at": at, "changes": changes, "p50_seconds": p50, "p95_seconds": p95}
        report.charts["freshness"] = [
            Series("p50", "s", _downsample([(t, p50) for t, _, p50, _ in per_load])),
            Series("p95", "s", _downsample([(t, p95) for t, _, _, p95 in per_load])),
        ]
        report.charts["throughput"] = [
            Series("records read", "records/min", _downsample([(t, float(r)) for t, r, _, _, _ in throughput])),
            Series("rejected", "records/min", _downsample([(t, float(rj)) for t, _, _, rj, _ in throughput])),
        ]
        by_reason: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
        for t, reason, n in rejects_hourly:
            by_reason[reason].append((t, float(n)))
        report.charts["rejects"] = [Series(reason, "records/h", pts) for reason, pts in sorted(by_reason.items())]
        history: dict[tuple[str, str], list[tuple[datetime, float]]] = defaultdict(list)
        for t, metric, series, value in samples:
            history[(metric, series)].append((t, value))
        live_lag = {s.shard_id: s.lag_seconds(now) for s in state.shards}
        lag_series = sorted({s for m, s in history if m == LAG_METRIC} | set(live_lag))
        report.charts["lag"] = [
            Series(
                shard,
                "s",
                _downsample(
                    history.get((LAG_METRIC, shard), []) + ([(now, live_lag[shard])] if shard in live_lag else [])
                ),
            )
            for shard in lag_series
        ]
        backlog_points = history.get((BACKLOG_METRIC, ""), [])
        if "pipeline" not in errors:
            backlog_points = [*backlog_points, (now, float(state.backlog.batches))]
        report.charts["backlog"] = [Series("batches landed, not loaded", "batches", _downsample(backlog_points))]
        report.charts["load_duration"] = [Series("load", "s", _downsample(history.get((LOAD_SECONDS_METRIC, ""), [])))]
        if row:
            run_id, checked, identities, keys, in_flight, total, missing, extra, stale, wrong, passed, verdict, mark = (
                row
            )
            report.reconciliation = {
                "run_id": run_id,
                "checked_at": utc_aware(checked),
                "identities": int(identities),
                "keys_checked": int(keys),
                "in_flight": int(in_flight),
                "mismatches": int(total),
                "by_kind": {"missing": int(missing), "extra": int(extra), "stale_value": int(stale),
                            "wrong_delete_state": int(wrong)},
                "passed": bool(passed),
                "verdict": verdict or "judged",
                "watermark_at": utc_aware(mark),
            }  # fmt: skip

    _guard(errors, "warehouse", warehouse_numbers, None)

    def snapshot() -> dict[str, Any]:
        from cognito_streams.landing_zone.snapshots import SnapshotStore, snapshot_status

        layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
        return snapshot_status(SnapshotStore(s3, layout), now=now)

    report.snapshot = _guard(errors, "snapshot", snapshot, {})
    report.as_of["snapshot"] = now if "snapshot" not in errors else None
    report.errors = errors
    return report


def by_shard(states: Iterable[ShardState]) -> Mapping[str, ShardState]:
    """The states by shard id."""
    return {s.shard_id: s for s in states}

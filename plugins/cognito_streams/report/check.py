"""The work of ``cognito_pipeline_health`` (the stall check) and the load samples of
``cognito_s3_to_redshift``: take the live state, keep it in ``health_samples``, emit the metrics, and
fail the check when the pipeline is stalled (the task's failure is the alert: the SNS notifier of
``cognito_streams.alerts``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from cognito_streams.core.health import iso
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.health import metrics
from cognito_streams.health.gather import (
    LOAD_SECONDS_METRIC,
    STALLED_METRIC,
    PipelineState,
    pipeline_state,
    sample_rows,
)
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Cursor, Warehouse, insert_rows

log = logging.getLogger(__name__)

#: health_samples rows older than this are deleted by each check.
KEEP_SAMPLES = timedelta(days=14)
#: While a stall lasts, the alert is sent again after this long (every check in between is red, silently).
REALERT = timedelta(hours=1)
ALERTED_METRIC = "stall_alerted"
CHECK_SOURCE = "cognito_pipeline_health"
LOAD_SOURCE = "cognito_s3_to_redshift"


class StallDetected(AirflowFailException):
    """The pipeline is stalled (no retry: the next check runs on schedule). ``notify`` is False for a
    stall already alerted less than ``REALERT`` ago: the task is red, the SNS alert is not sent again."""

    def __init__(self, message: str, *, notify: bool) -> None:
        super().__init__(message)
        self.notify = notify


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def write_samples(
    warehouse: Warehouse, at: datetime, rows: Sequence[tuple[str, str, float]], source: str, *, prune: bool = False
) -> None:
    """Insert one check's (or load's) samples; with ``prune``, delete those older than ``KEEP_SAMPLES``."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    stamp = _naive(at)

    def write(cur: Cursor) -> None:
        insert_rows(cur, sql.report("insert_health_sample"), [(stamp, m, s, float(v), source) for m, s, v in rows])
        if prune:
            cur.execute(sql.report("prune_health_samples"), (_naive(at - KEEP_SAMPLES),))

    warehouse.write(f"{len(rows)} health sample(s) from {source}", sql.report("lock_health_samples"), write)


def _should_notify(warehouse: Warehouse, now: datetime) -> bool:
    """A new stall (the previous check was not stalled), or one last alerted ``REALERT`` ago or more."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    with warehouse.transaction() as cur:
        cur.execute(sql.report("health_previous_sample"), (STALLED_METRIC, _naive(now)))
        previous = cur.fetchone()
        cur.execute(sql.report("health_last_sample_at"), (ALERTED_METRIC,))
        alerted = cur.fetchone()
    was_stalled = previous is not None and float(previous[0]) > 0
    last_alert = alerted[0] if alerted else None
    if last_alert is not None and last_alert.tzinfo is None:
        last_alert = last_alert.replace(tzinfo=UTC)
    return not was_stalled or last_alert is None or now - last_alert >= REALERT


def stall_message(state: PipelineState) -> str:
    """The alert's text: each problem with its numbers and what to do."""
    lines = [f"cognito-streams is STALLED ({len(state.assessment.problems)} problem(s)) at {iso(state.now)}:"]
    for p in state.assessment.problems:
        lines.append(f"- {p.title}: {p.detail}. What to do: {p.what_to_do}")
    lines.append("Live numbers: Airflow UI, Browse > Pipeline health (/cognito-streams/health).")
    return "\n".join(lines)


def run_check(
    settings: PipelineSettings, warehouse: Warehouse, s3: Any, kinesis: Any, now: datetime | None = None
) -> dict[str, Any]:
    """One stall check: samples, metrics, and :class:`StallDetected` when stalled. Returns the summary."""
    now = now or datetime.now(UTC)
    state = pipeline_state(settings, warehouse, s3, kinesis, now=now)
    notify = state.assessment.stalled and _should_notify(warehouse, now)
    rows = sample_rows(state)
    if notify:
        rows.append((ALERTED_METRIC, "", 1.0))
    write_samples(warehouse, now, rows, CHECK_SOURCE, prune=True)
    last_load_at = state.last_load.get("loaded_at")
    metrics.checked(
        state.shards,
        state.backlog.batches,
        state.assessment.stalled,
        None if last_load_at is None else (now - last_load_at).total_seconds(),
        now,
    )
    summary = {
        "checked_at": iso(now),
        "state": state.assessment.state,
        "stalled": state.assessment.stalled,
        "lag_seconds": {s.shard_id: round(s.lag_seconds(now), 3) for s in state.shards},
        "backlog_batches": state.backlog.batches,
        "watermark": iso(state.assessment.watermark),
        "behind": list(state.assessment.behind),
    }
    log.info("pipeline health: %s", summary)
    if state.assessment.stalled:
        message = stall_message(state)
        if not notify:
            message += f"\n(alerted already; the alert is repeated every {REALERT} while the stall lasts)"
        raise StallDetected(message, notify=notify)
    return summary


def record_load(
    settings: PipelineSettings, warehouse: Warehouse, started_at: datetime, seconds: float, batches: int
) -> dict[str, Any]:
    """After a load: the freshness of the versions it added, its duration, as samples and metrics."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    with warehouse.transaction() as cur:
        cur.execute(sql.report("health_freshness_of_load"), (_naive(started_at),))
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

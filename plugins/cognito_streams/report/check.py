"""The work of ``cognito_pipeline_health`` (the stall check): take the live state (``monitoring.state``),
keep it in ``health_samples`` (``monitoring.samples``), emit the metrics, and fail the check when the
pipeline is stalled (the task's failure is the alert: the SNS notifier of
``cognito_streams.alerts``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from cognito_streams.core.report.health import iso
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.monitoring import metrics
from cognito_streams.monitoring.samples import write_samples
from cognito_streams.monitoring.state import STALLED_METRIC, PipelineState, pipeline_state, sample_rows, utc_naive
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: While a stall lasts, the alert is sent again after this long (every check in between is red, silently).
REALERT = timedelta(hours=1)
ALERTED_METRIC = "stall_alerted"
CHECK_SOURCE = "cognito_pipeline_health"


class StallDetected(AirflowFailException):
    """The pipeline is stalled (no retry: the next check runs on schedule). ``notify`` is False for a
    stall already alerted less than ``REALERT`` ago: the task is red, the SNS alert is not sent again."""

    def __init__(self, message: str, *, notify: bool) -> None:
        super().__init__(message)
        self.notify = notify


def _should_notify(warehouse: Warehouse, now: datetime) -> bool:
    """A new stall (the previous check was not stalled), or one last alerted ``REALERT`` ago or more."""
    sql = ReportingSql(warehouse.schema, warehouse.engine)
    with warehouse.transaction() as cur:
        cur.execute(sql.report("health_previous_sample"), (STALLED_METRIC, utc_naive(now)))
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

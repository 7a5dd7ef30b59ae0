"""Airflow metrics emitted by the pipeline's tasks, through Airflow's own metrics settings (``[metrics]``:
StatsD or OpenTelemetry; nothing is sent when metrics are off).

Names (docs/operations.md, "Metrics"); ``<shard>`` is the Kinesis shard id, in the name because plain
StatsD has no tags (it is also given as the ``shard_id`` tag for backends that keep tags):

- ``cognito_streams.landing.records_read`` / ``records_landed`` / ``records_rejected`` (counters, per task)
- ``cognito_streams.landing.lag_seconds.<shard>`` (gauge: MillisBehindLatest at the end of the task)
- ``cognito_streams.loading.load_seconds`` (timer), ``cognito_streams.loading.batches``,
  ``cognito_streams.loading.changes`` (counters), ``cognito_streams.loading.freshness_p50_seconds`` /
  ``freshness_p95_seconds`` (gauges: change made -> loaded, over the versions the load added)
- ``cognito_streams.health.kinesis_lag_seconds.<shard>`` and ``..._max``, ``cognito_streams.health.backlog_batches``,
  ``cognito_streams.health.stalled`` (0 or 1), ``cognito_streams.health.last_load_age_seconds`` (gauges, per check)

A metric that cannot be sent is logged and skipped: metrics are best effort and never fail a task.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cognito_streams.core.report.health import ShardState

log = logging.getLogger(__name__)

PREFIX = "cognito_streams"


def _stats() -> Any:
    from airflow.sdk.observability import stats

    return stats


def _send(kind: str, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
    try:
        stats = _stats()
        if kind == "incr":
            stats.incr(name, count=int(value), tags=dict(tags) if tags else None)
        elif kind == "timing":
            stats.timing(name, timedelta(seconds=value), tags=dict(tags) if tags else None)
        else:
            stats.gauge(name, value, tags=dict(tags) if tags else None)
    except Exception as err:  # noqa: BLE001 - best effort (module docstring)
        log.warning("metric %s not sent: %s", name, err)


def landed(outcome: Mapping[str, Any]) -> None:
    """A landing task's counts and its shard's lag (``ShardOutcome.as_dict()``)."""
    shard = str(outcome.get("shard_id"))
    tags = {"shard_id": shard}
    for key in ("records_read", "records_landed", "records_rejected"):
        _send("incr", f"{PREFIX}.landing.{key}", float(outcome.get(key) or 0), tags)
    lag_ms = outcome.get("lag_ms")
    if lag_ms is not None:
        _send("gauge", f"{PREFIX}.landing.lag_seconds.{shard}", float(lag_ms) / 1000.0, tags)


def loaded(seconds: float, batches: int, freshness: Mapping[str, Any]) -> None:
    """A loading task's duration, batches, versions added and their freshness."""
    _send("timing", f"{PREFIX}.loading.load_seconds", seconds)
    _send("incr", f"{PREFIX}.loading.batches", float(batches))
    _send("incr", f"{PREFIX}.loading.changes", float(freshness.get("changes") or 0))
    for pct in ("p50", "p95"):
        value = freshness.get(f"{pct}_seconds")
        if value is not None:
            _send("gauge", f"{PREFIX}.loading.freshness_{pct}_seconds", float(value))


def checked(
    shards: list[ShardState], backlog_batches: int, stalled: bool, last_load_age: float | None, now: Any
) -> None:
    """One health check's gauges."""
    lags = {s.shard_id: s.lag_seconds(now) for s in shards}
    for shard, lag in lags.items():
        _send("gauge", f"{PREFIX}.health.kinesis_lag_seconds.{shard}", lag, {"shard_id": shard})
    _send("gauge", f"{PREFIX}.health.kinesis_lag_seconds_max", max(lags.values(), default=0.0))
    _send("gauge", f"{PREFIX}.health.backlog_batches", float(backlog_batches))
    _send("gauge", f"{PREFIX}.health.stalled", 1.0 if stalled else 0.0)
    if last_load_age is not None:
        _send("gauge", f"{PREFIX}.health.last_load_age_seconds", last_load_age)

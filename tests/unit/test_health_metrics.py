"""The pipeline's metrics go out through Airflow's own metrics settings: with ``[metrics] statsd_on``, a
task's calls arrive at the StatsD server under the documented names (the task runner initialises the
same stats module with ``get_stats_factory()``; this test does what it does)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cognito_streams.core.report.health import ShardState
from cognito_streams.monitoring import metrics

NOW = datetime(2026, 11, 25, 20, 40, tzinfo=UTC)


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(server.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    try:
        yield server
    finally:
        server.close()
        monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON")
        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)


def received(server: socket.socket, count: int) -> list[str]:
    lines: list[str] = []
    while len(lines) < count:
        lines += server.recv(65535).decode().splitlines()
    return lines


def test_a_landing_task_sends_its_counts_and_lag(statsd: socket.socket) -> None:
    metrics.landed({"shard_id": "shardId-000000000001", "records_read": 7, "records_landed": 6,
                    "records_rejected": 1, "lag_ms": 2500})  # fmt: skip
    assert received(statsd, 4) == [
        "airflow.cognito_streams.landing.records_read:7|c",
        "airflow.cognito_streams.landing.records_landed:6|c",
        "airflow.cognito_streams.landing.records_rejected:1|c",
        "airflow.cognito_streams.landing.lag_seconds.shardId-000000000001:2.5|g",
    ]


def test_a_load_sends_its_duration_and_freshness(statsd: socket.socket) -> None:
    metrics.loaded(1.25, 3, {"changes": 40, "p50_seconds": 4.0, "p95_seconds": 9.5})
    assert received(statsd, 5) == [
        "airflow.cognito_streams.loading.load_seconds:1250.000000|ms",
        "airflow.cognito_streams.loading.batches:3|c",
        "airflow.cognito_streams.loading.changes:40|c",
        "airflow.cognito_streams.loading.freshness_p50_seconds:4.0|g",
        "airflow.cognito_streams.loading.freshness_p95_seconds:9.5|g",
    ]


def test_a_health_check_sends_lag_backlog_and_the_stall(statsd: socket.socket) -> None:
    shard = ShardState("shardId-000000000000", oldest_waiting_at=NOW - timedelta(seconds=90), peeked_at=NOW)
    metrics.checked([shard], backlog_batches=4, stalled=True, last_load_age=700.0, now=NOW)
    assert received(statsd, 5) == [
        "airflow.cognito_streams.health.kinesis_lag_seconds.shardId-000000000000:90.0|g",
        "airflow.cognito_streams.health.kinesis_lag_seconds_max:90.0|g",
        "airflow.cognito_streams.health.backlog_batches:4.0|g",
        "airflow.cognito_streams.health.stalled:1.0|g",
        "airflow.cognito_streams.health.last_load_age_seconds:700.0|g",
    ]


def test_without_metrics_configured_nothing_is_sent_and_nothing_fails() -> None:
    metrics.checked([], backlog_batches=0, stalled=False, last_load_age=None, now=NOW)

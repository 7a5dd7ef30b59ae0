"""The health rules (core/report/health.py): when the pipeline is stalled, behind or fine, its watermark, and
the JSON document's fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cognito_streams.core.report.health import (
    Backlog,
    HealthReport,
    Series,
    ShardState,
    assess,
    iso,
    percentile,
    watermark,
)

NOW = datetime(2026, 11, 25, 20, 40, tzinfo=UTC)
LIMIT = 600.0


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def shard(shard_id: str = "shardId-000000000000", **kw: object) -> ShardState:
    values: dict[str, object] = {"peeked_at": NOW, "landed_through": ago(5), "last_landed_at": ago(30)}
    values.update(kw)
    return ShardState(shard_id, **values)  # type: ignore[arg-type]


def test_records_waiting_longer_than_the_limit_with_no_landing_is_a_stall() -> None:
    # GIVEN a record waiting 11 minutes and no batch of its shard landed for 12 minutes
    s = shard(oldest_waiting_at=ago(660), last_landed_at=ago(720))
    verdict = assess(NOW, [s], Backlog(), last_load_at=ago(700), stall_alert_seconds=LIMIT)
    # THEN stalled, saying which shard, since when and what to do
    assert verdict.stalled and verdict.state == "stalled"
    (problem,) = verdict.problems
    assert problem.code == "landing_stalled" and "shardId-000000000000" in problem.title
    assert problem.since == ago(660) and "cognito_stream_to_s3" in problem.what_to_do
    assert s.lag_seconds(NOW) == 660


def test_a_backlog_being_worked_off_is_behind_not_stalled() -> None:
    # records waited 20 minutes, but batches of this shard keep landing: a catch-up, not a stall
    s = shard(oldest_waiting_at=ago(1200), last_landed_at=ago(40))
    verdict = assess(NOW, [s], Backlog(), last_load_at=ago(50), stall_alert_seconds=LIMIT)
    assert not verdict.stalled and verdict.state == "behind" and verdict.behind


def test_a_child_shard_waiting_for_its_parent_is_not_a_stall() -> None:
    s = shard(oldest_waiting_at=ago(5000), last_landed_at=None, waiting_for_parent=True)
    assert not assess(NOW, [s], Backlog(), ago(10), LIMIT).stalled


def test_an_idle_stream_is_fine_however_long_ago_the_last_landing() -> None:
    # Event mode: no record, no landing run for an hour. Nothing waits, so nothing is stalled.
    s = shard(oldest_waiting_at=None, last_landed_at=ago(3600), landed_through=ago(3600))
    verdict = assess(NOW, [s], Backlog(), last_load_at=ago(3600), stall_alert_seconds=LIMIT)
    assert verdict.state == "ok" and s.lag_seconds(NOW) == 0
    # ... and everything up to the peek is landed and loaded
    assert verdict.watermark == NOW


def test_landed_batches_not_loaded_for_longer_than_the_limit_with_no_load_is_a_stall() -> None:
    backlog = Backlog(batches=3, oldest_landed_at=ago(700))
    verdict = assess(NOW, [shard()], backlog, last_load_at=ago(900), stall_alert_seconds=LIMIT)
    (problem,) = verdict.problems
    assert problem.code == "loading_stalled" and "3 landed batch(es)" in problem.detail
    assert "cognito_s3_to_redshift" in problem.what_to_do
    # a load a minute ago: the loader is working it off
    assert assess(NOW, [shard()], backlog, last_load_at=ago(60), stall_alert_seconds=LIMIT).state == "behind"
    # never loaded at all counts as no load
    assert assess(NOW, [shard()], backlog, last_load_at=None, stall_alert_seconds=LIMIT).stalled


def test_a_young_backlog_is_not_a_stall() -> None:
    backlog = Backlog(batches=3, oldest_landed_at=ago(100))
    assert assess(NOW, [shard()], backlog, last_load_at=ago(900), stall_alert_seconds=LIMIT).state == "ok"


def test_without_a_peek_the_lag_comes_from_the_checkpoint_and_grows_with_time() -> None:
    s = ShardState("s", checkpoint_lag_ms=2000, checkpoint_at=ago(700), landed_through=ago(702), peek_error="x")
    assert s.lag_seconds(NOW) == pytest.approx(702)
    assert assess(NOW, [s], Backlog(), ago(10), LIMIT).stalled
    assert s.landed_until() == ago(702)


def test_the_watermark_is_the_lowest_shard_and_stops_at_the_oldest_unloaded_batch() -> None:
    a = shard("a", oldest_waiting_at=ago(100))  # landed up to 100 s ago
    b = shard("b", oldest_waiting_at=None, unloaded_since=ago(300))  # landed all, loaded up to 300 s ago
    assert watermark([a, b]) == ago(300)
    assert watermark([a]) == ago(100)
    # a shard that was never landed and cannot be peeked: unknown
    assert watermark([a, ShardState("c")]) is None
    assert watermark([]) is None


def test_percentile_is_percentile_cont() -> None:
    assert percentile([], 0.5) is None
    assert percentile([4.0], 0.95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(list(map(float, range(101))), 0.95) == 95.0


def test_the_json_has_the_documented_fields_in_utc() -> None:
    s = shard(oldest_waiting_at=ago(12.5))
    verdict = assess(NOW, [s], Backlog(batches=2, oldest_landed_at=ago(20)), ago(30), LIMIT)
    report = HealthReport(
        generated_at=NOW,
        stall_alert_seconds=LIMIT,
        assessment=verdict,
        shards=[s],
        backlog=Backlog(batches=2, oldest_landed_at=ago(20)),
        last_load={"loaded_at": ago(30), "batches": 2},
        freshness={"loaded_at": ago(30), "p50_seconds": 3.0, "p95_seconds": 7.5},
        charts={"freshness": [Series("p95", "s", [(ago(30), 7.5)])]},
    )
    doc = report.as_dict()
    assert doc["generated_at"] == "2026-11-25T20:40:00.000Z"
    assert doc["last_load_at"] == "2026-11-25T20:39:30.000Z" and doc["last_load_age_seconds"] == 30
    assert doc["freshness_p95_seconds"] == 7.5 and doc["freshness_p50_seconds"] == 3.0
    assert doc["lag_seconds"] == {"shardId-000000000000": 12.5}
    assert doc["backlog_batches"] == 2 and doc["stalled"] is False and doc["state"] == "ok"
    assert doc["charts"]["freshness"][0] == {"name": "p95", "unit": "s", "points": [["2026-11-25T20:39:30.000Z", 7.5]]}


def test_iso_is_utc_with_z() -> None:
    assert iso(None) is None
    assert iso(datetime(2026, 1, 1, 12)) == "2026-01-01T12:00:00.000Z"
    assert iso(datetime(2026, 1, 1, 13, tzinfo=UTC) + timedelta(microseconds=1500)) == "2026-01-01T13:00:00.001Z"


def test_the_json_holds_the_latest_snapshots_progress() -> None:
    report = HealthReport(
        generated_at=NOW,
        stall_alert_seconds=LIMIT,
        assessment=assess(NOW, [], Backlog(), None, LIMIT),
        snapshot={"snapshot_id": "manual-1a2b", "identities": 10, "identities_done": 4, "created_at": ago(60)},
    )
    doc = report.as_dict()
    assert doc["snapshot"] == {
        "snapshot_id": "manual-1a2b",
        "identities": 10,
        "identities_done": 4,
        "created_at": "2026-11-25T20:39:00.000Z",
    }
    assert HealthReport(NOW, LIMIT, assess(NOW, [], Backlog(), None, LIMIT)).as_dict()["snapshot"] == {}

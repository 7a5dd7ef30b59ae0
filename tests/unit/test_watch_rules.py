"""The event mode's pure rules: the watcher's call budget, when it fires, and the loader's pause
(``min_load_interval_seconds``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cognito_streams.core.landing import watch
from cognito_streams.core.landing.checkpoints import Checkpoint, Lease
from cognito_streams.core.loading.pace import load_wait_seconds
from cognito_streams.landing.mode import LandingModeError, parse_landing_mode, parse_poll_seconds
from cognito_streams.settings import SettingsError, parse_settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def checkpoint(sequence: str | None = None, lease_until: datetime | None = None) -> Checkpoint:
    ckpt = Checkpoint.new("s", "shardId-000000000000", NOW)
    if lease_until is not None:
        ckpt = ckpt.model_copy(update={"lease": Lease(owner="run", acquired_at=NOW, expires_at=lease_until)})
    return ckpt.model_copy(update={"sequence_number": sequence})


def test_the_budget_allows_one_call_per_shard_and_api_per_second() -> None:
    budget = watch.CallBudget()
    assert budget.wait("a", "GetRecords", 100.0) == 0
    budget.spend("a", "GetRecords", 100.0)
    assert budget.wait("a", "GetRecords", 100.4) == pytest.approx(0.6)
    assert budget.wait("a", "GetShardIterator", 100.4) == 0  # another API of the shard
    assert budget.wait("b", "GetRecords", 100.4) == 0  # another shard
    assert budget.wait("a", "GetRecords", 101.0) == 0
    budget.spend("a", "GetRecords", 101.0, penalty=4.0)  # throttled: slow down
    assert budget.wait("a", "GetRecords", 102.0) == pytest.approx(4.0)


def test_the_budget_refuses_more_than_one_probe_per_second() -> None:
    with pytest.raises(ValueError, match="below 1 s"):
        watch.CallBudget(0.5)


def test_fires_once_per_wait_until_the_checkpoint_changes_or_refire_time_passes() -> None:
    w = watch.ShardWatch("shardId-000000000000")
    w.saw_checkpoint("etag-1", checkpoint("5"))
    assert not watch.should_fire(w, leased=False, now=0.0, refire_seconds=120)  # nothing seen waiting
    w.took_iterator("it-1", 0.0)
    w.probed(records=1, next_iterator="it-2", behind_ms=0, closed=False)
    assert watch.should_fire(w, leased=False, now=1.0, refire_seconds=120)
    watch.fired(w, 1.0)
    assert not watch.should_fire(w, leased=False, now=2.0, refire_seconds=120)
    assert not watch.should_fire(w, leased=False, now=100.0, refire_seconds=120)
    # no landing run took it up within refire_seconds: fire again
    assert watch.should_fire(w, leased=False, now=121.0, refire_seconds=120)
    # a landing run took the shard (new checkpoint version): the wait is over, the next probe decides
    w.saw_checkpoint("etag-2", checkpoint("5", lease_until=NOW + timedelta(minutes=15)))
    assert not w.waiting and w.fired_version is None
    assert w.iterator == "it-1"  # same position: the iterator is still good
    w.saw_checkpoint("etag-3", checkpoint("9"))
    assert w.iterator is None  # the checkpoint moved: a new iterator from there


def test_a_leased_shard_never_fires() -> None:
    w = watch.ShardWatch("shardId-000000000000")
    w.saw_checkpoint("etag-1", checkpoint("5", lease_until=NOW + timedelta(minutes=1)))
    w.waiting = True
    assert watch.is_leased(w.checkpoint, NOW)
    assert not watch.should_fire(w, leased=True, now=0.0, refire_seconds=120)
    assert not watch.is_leased(w.checkpoint, NOW + timedelta(minutes=2))  # the dead task's lease expired


def test_the_end_of_a_closed_shard_is_work_waiting() -> None:
    w = watch.ShardWatch("shardId-000000000000")
    w.saw_checkpoint("e", checkpoint("5"))
    w.took_iterator("it", 0.0)
    w.probed(records=0, next_iterator="it-2", behind_ms=1000, closed=False)
    assert not w.waiting and w.iterator == "it-2"  # behind the tip: walk on next round
    w.probed(records=0, next_iterator="it-3", behind_ms=0, closed=False)
    assert not w.waiting  # idle at the tip
    w.probed(records=0, next_iterator=None, behind_ms=0, closed=True)
    assert w.waiting  # a landing run must mark it finished so its children are read


def test_the_iterator_is_renewed_before_it_expires() -> None:
    w = watch.ShardWatch("x")
    assert w.needs_iterator(0.0)
    w.saw_checkpoint(None, checkpoint())
    w.took_iterator("it", 10.0)
    assert not w.needs_iterator(10.0 + watch.ITERATOR_MAX_AGE_SECONDS - 1)
    assert w.needs_iterator(10.0 + watch.ITERATOR_MAX_AGE_SECONDS)


def test_load_wait() -> None:
    assert load_wait_seconds(None, NOW, 10) == 0
    assert load_wait_seconds(NOW - timedelta(seconds=4), NOW, 10) == pytest.approx(6)
    assert load_wait_seconds(NOW - timedelta(seconds=30), NOW, 10) == 0
    assert load_wait_seconds(NOW + timedelta(seconds=30), NOW, 10) == 10  # a clock ahead waits one interval at most
    assert load_wait_seconds(NOW - timedelta(seconds=4), NOW, 0) == 0


def test_min_load_interval_setting() -> None:
    base = {
        "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
        "stream_name": "s",
        "publish_role_arn": "arn:aws:iam::123456789012:role/r",
        "landing_bucket": "bucket",
    }
    assert parse_settings(base).min_load_interval_seconds == 10
    assert parse_settings({**base, "min_load_interval_seconds": 0}).min_load_interval_seconds == 0
    for bad in (-1, 7200, True):
        with pytest.raises(SettingsError, match="min_load_interval_seconds"):
            parse_settings({**base, "min_load_interval_seconds": bad})


def test_landing_mode_values() -> None:
    assert parse_landing_mode(None) == "schedule"
    assert parse_landing_mode(" Event ") == "event"
    with pytest.raises(LandingModeError, match="not a landing mode"):
        parse_landing_mode("continuous")
    assert parse_poll_seconds(None) == 1.0
    assert parse_poll_seconds("2.5") == 2.5
    for bad in ("0.5", "soon", "nan"):
        with pytest.raises(LandingModeError, match="event_poll_seconds"):
            parse_poll_seconds(bad)


def test_the_loader_sleeps_until_the_interval_after_the_last_load() -> None:
    from cognito_streams.loading.pace import wait_for_load_slot

    settings = parse_settings(
        {
            "identity_pool_ids": ["us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"],
            "stream_name": "s",
            "publish_role_arn": "arn:aws:iam::123456789012:role/r",
            "landing_bucket": "bucket",
        }
    )
    slept: list[float] = []
    waited = wait_for_load_slot(settings, NOW - timedelta(seconds=3), now=lambda: NOW, sleep=slept.append)
    assert waited == pytest.approx(7) and slept == [pytest.approx(7)]
    assert wait_for_load_slot(settings, None, now=lambda: NOW, sleep=slept.append) == 0
    assert len(slept) == 1


def test_a_pending_run_covers_shards_whose_landing_task_has_not_started() -> None:
    watches = {s: watch.ShardWatch(s) for s in ("a", "b")}
    for w in watches.values():
        w.saw_checkpoint(f"{w.shard_id}-1", checkpoint("5"))
    watches["a"].waiting = True
    fire, pending = watch.to_fire(watches, ["a", "b"], set(), None, now=0.0, refire_seconds=120)
    assert fire == ["a"] and pending is not None
    # records on b before the run reached it: left to that run
    watches["b"].waiting = True
    fire, pending = watch.to_fire(watches, ["a", "b"], set(), pending, now=1.0, refire_seconds=120)
    assert fire == []
    # b's land_shard took and gave back its lease (new version), records came after it: a new run
    watches["b"].saw_checkpoint("b-3", checkpoint("9"))
    watches["b"].waiting = True
    fire, pending = watch.to_fire(watches, ["a", "b"], set(), pending, now=2.0, refire_seconds=120)
    assert fire == ["b"]
    # a run that never came: after refire_seconds the shards fire again
    fire, _ = watch.to_fire(watches, ["a", "b"], set(), pending, now=200.0, refire_seconds=120)
    assert fire == ["a", "b"]

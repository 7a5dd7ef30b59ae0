"""The landing mode switch (``[cognito_streams] landing_mode``) and the event mode's watcher against
moto: both modes parse; the watcher fires on a record and not before, once per burst, never probes
a shard a landing task holds, and stays within its Kinesis budget (counted call by call)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from typing import Any

import pytest

from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.landing.trigger import Clients, RecordsWaitingTrigger, ShardProber
from cognito_streams.landing_zone.checkpoints import CheckpointStore
from cognito_streams.settings import parse_settings
from tests.landing_records import put_records, seed_records

pytestmark = [pytest.mark.dag, pytest.mark.integration]


def parse_landing_dag(monkeypatch: pytest.MonkeyPatch, mode: str | None) -> tuple[Any, dict[str, str]]:
    """``dags/cognito_stream_to_s3.py`` parsed with ``landing_mode`` set (None: unset)."""
    from airflow.dag_processing.dagbag import DagBag

    from local.stack import REPO

    if mode is None:
        monkeypatch.delenv("AIRFLOW__COGNITO_STREAMS__LANDING_MODE", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__COGNITO_STREAMS__LANDING_MODE", mode)
    bag = DagBag(dag_folder=str(REPO / "dags" / "cognito_stream_to_s3.py"))
    return bag.dags.get("cognito_stream_to_s3"), dict(bag.import_errors)


def test_schedule_mode_is_the_default_and_parses_as_cron(monkeypatch: pytest.MonkeyPatch) -> None:
    for mode in (None, "schedule"):
        dag, errors = parse_landing_dag(monkeypatch, mode)
        assert errors == {}
        assert type(dag.timetable).__name__ != "AssetTriggeredTimetable"
        assert "*/5 * * * *" in repr(dag.timetable)


def test_event_mode_parses_as_an_asset_schedule_with_our_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    dag, errors = parse_landing_dag(monkeypatch, "event")
    assert errors == {}
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.name == "cognito_streams_records_waiting"
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, RecordsWaitingTrigger)
    assert watcher.trigger.serialize()[1] == {
        "variable": "cognito_pipeline",
        "poll_seconds": 1.0,
        "refire_seconds": 120.0,
    }
    # The same tasks as the schedule mode: every guarantee of the landing run is kept.
    assert sorted(dag.task_ids) == ["check_shards", "land_shard", "plan_shards", "publish_landed"]
    assert dag.max_active_runs == 1


def test_an_unknown_mode_fails_the_parse_naming_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    _, errors = parse_landing_dag(monkeypatch, "sometimes")
    (error,) = errors.values()
    assert "landing_mode = 'sometimes' is not a landing mode" in error
    assert "AIRFLOW__COGNITO_STREAMS__LANDING_MODE" in error


def test_a_poll_interval_below_the_budget_fails_the_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__COGNITO_STREAMS__EVENT_POLL_SECONDS", "0.2")
    _, errors = parse_landing_dag(monkeypatch, "event")
    (error,) = errors.values()
    assert "event_poll_seconds = '0.2': at least 1 s" in error


# -- the watcher against moto ---------------------------------------------------------------------------------


@pytest.fixture
def watched(stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh 2-shard stream and the Variable pointing at it."""
    name = f"watch-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=name, ShardCount=2)
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "stream_name": name,
        "landing_prefix": f"watchtests/{name}",
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    return variable


class CountingKinesis:
    """The Kinesis client the watcher uses, logging every call that goes to moto: (monotonic time at its
    start, API, shard). GetRecords names no shard, its iterator does: iterators are traced back to the
    GetShardIterator call that started their chain."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[float, str, str | None]] = []
        self._shard_of: dict[str, str] = {}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((time.monotonic(), "GetShardIterator", kwargs["ShardId"]))
        response = self.client.get_shard_iterator(**kwargs)
        self._shard_of[response["ShardIterator"]] = kwargs["ShardId"]
        return dict(response)

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        shard = self._shard_of.get(kwargs["ShardIterator"])
        self.calls.append((time.monotonic(), "GetRecords", shard))
        response = self.client.get_records(**kwargs)
        if response.get("NextShardIterator") and shard is not None:
            self._shard_of[response["NextShardIterator"]] = shard
        return dict(response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def of(self, api: str, shard: str | None = None) -> list[float]:
        return [t for t, name, s in self.calls if name == api and (shard is None or s == shard)]


def prober_for(variable: dict[str, Any], aws: Any) -> tuple[ShardProber, CountingKinesis]:
    settings = parse_settings(variable)
    kinesis = CountingKinesis(aws("kinesis"))
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    return ShardProber(Clients(kinesis, aws("s3"), layout, settings.stream_name)), kinesis


def land_now(variable: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    """A landing run's tasks, in this process (what the run the watcher starts does)."""
    from cognito_streams.landing import tasks

    settings = parse_settings(variable)
    return [
        tasks.land(s, "cognito_stream_to_s3", run_id, settings)
        for s in tasks.plan({}, "cognito_stream_to_s3", run_id, settings)
    ]


def test_the_watcher_fires_on_a_record_and_not_before_once_per_burst(watched: dict[str, Any], aws: Any) -> None:
    prober, _ = prober_for(watched, aws)
    # GIVEN an empty stream: round after round, nothing to fire for
    assert [prober.round() for _ in range(3)] == [[], [], []]
    # WHEN records arrive (a burst over both shards)
    put_records(aws("kinesis"), watched["stream_name"], seed_records(40, seed=5))
    # THEN the next round fires for both shards, and the rounds after it do not fire again for the same wait
    fired = prober.round()
    assert sorted(fired) == ["shardId-000000000000", "shardId-000000000001"]
    assert [prober.round() for _ in range(3)] == [[], [], []]
    # WHEN the landing run it started lands them
    outcomes = land_now(watched, "asset_triggered__1")
    assert sum(o["records_read"] for o in outcomes) == 40
    # THEN nothing more to fire for ...
    assert [prober.round() for _ in range(2)] == [[], []]
    # ... until the next record
    put_records(aws("kinesis"), watched["stream_name"], seed_records(1, seed=6))
    (first,) = prober.round()
    # WHEN, before that run starts, records arrive on the other shard THEN they are left to it: no second run
    other = "shardId-000000000001" if first == "shardId-000000000000" else "shardId-000000000000"
    keys = [f"pk-{i}" for i in range(200)]
    put = put_records(aws("kinesis"), watched["stream_name"], seed_records(200, seed=10), keys)
    assert any(p["ShardId"] == other for p in put)
    assert [prober.round() for _ in range(2)] == [[], []]
    # ... and that one run lands them all
    land_now(watched, "asset_triggered__3")
    assert [prober.round() for _ in range(2)] == [[], []]


def test_the_watcher_leaves_a_leased_shard_alone_and_fires_when_the_lease_is_given_back(
    watched: dict[str, Any], aws: Any
) -> None:
    settings = parse_settings(watched)
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    store = CheckpointStore(aws("s3"), layout, 600)
    prober, calls = prober_for(watched, aws)
    assert prober.round() == []
    # GIVEN a landing task holding shard 0 (its lease) while records arrive on it
    held = store.acquire("shardId-000000000000", "cognito_stream_to_s3:manual__x")
    assert not isinstance(held, type(None))
    put_records(aws("kinesis"), watched["stream_name"], seed_records(30, seed=7))
    before = len(calls.of("GetRecords", "shardId-000000000000")) + len(
        calls.of("GetShardIterator", "shardId-000000000000")
    )
    # WHEN the watcher goes round THEN it fires for shard 1 only and makes no call on shard 0
    assert prober.round() == ["shardId-000000000001"]
    assert prober.round() == []
    after = len(calls.of("GetRecords", "shardId-000000000000")) + len(
        calls.of("GetShardIterator", "shardId-000000000000")
    )
    assert after == before
    # WHEN the task gives the lease back without having read them (it died, say) THEN the watcher fires for them
    store.release(held, "cognito_stream_to_s3:manual__x")  # type: ignore[arg-type]
    assert prober.round() == ["shardId-000000000000"]


def test_the_watcher_stays_within_one_call_per_shard_per_second(watched: dict[str, Any], aws: Any) -> None:
    prober, calls = prober_for(watched, aws)
    # GIVEN an idle stream watched back to back (no pause between rounds: only the budget paces it),
    # then records arriving and being landed while it watches
    deadline = time.monotonic() + 6
    landed = False
    rounds = 0
    while time.monotonic() < deadline:
        prober.round()
        rounds += 1
        if rounds == 3:
            put_records(aws("kinesis"), watched["stream_name"], seed_records(20, seed=8))
        if rounds == 5 and not landed:
            land_now(watched, "asset_triggered__2")
            landed = True
    # THEN for each shard and API, two calls are never less than a second apart (Kinesis allows 5 per second
    # per shard, shared with land_shard)
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        for api in ("GetRecords", "GetShardIterator"):
            times = calls.of(api, shard)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert all(g >= 1.0 for g in gaps), (shard, api, gaps)
        assert calls.of("GetRecords", shard), f"the watcher never probed {shard}"
    assert rounds >= 5


def test_the_trigger_yields_an_event_on_a_record_and_none_before(watched: dict[str, Any], aws: Any) -> None:
    trigger = RecordsWaitingTrigger()

    async def scenario() -> dict[str, Any]:
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        # Nothing on the stream: no event within several rounds.
        done, _ = await asyncio.wait({first}, timeout=3.5)
        assert not done, "the watcher fired with no record waiting"
        await asyncio.to_thread(put_records, aws("kinesis"), watched["stream_name"], seed_records(3, seed=9))
        event = await asyncio.wait_for(first, timeout=60)
        await events.aclose()
        return dict(event.payload)

    payload = asyncio.run(scenario())
    assert payload["shards"] and set(payload["shards"]) <= {"shardId-000000000000", "shardId-000000000001"}


def test_the_watcher_reads_a_recreated_streams_shards_despite_the_old_checkpoints(
    watched: dict[str, Any], aws: Any
) -> None:
    from datetime import UTC, datetime

    from cognito_streams.core.landing.checkpoints import Checkpoint

    settings = parse_settings(watched)
    layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
    store = CheckpointStore(aws("s3"), layout, 600)
    # GIVEN checkpoints left by a deleted stream of the same name: shard 0 read to its end, shard 1 far ahead
    then = datetime(2026, 1, 1, tzinfo=UTC)
    for shard, update in (
        ("shardId-000000000000", {"finished": True}),
        ("shardId-000000000001", {"sequence_number": "999999"}),
    ):
        old = Checkpoint.new(settings.stream_name, shard, then).model_copy(update={"stream_created_at": then, **update})
        store.write(store.read(shard), old)
    prober, _ = prober_for(watched, aws)
    assert prober.round() == []
    # WHEN records arrive on the new stream THEN the watcher fires for both shards (a landing run starts them over)
    put_records(aws("kinesis"), watched["stream_name"], seed_records(40, seed=11))
    assert sorted(prober.round()) == ["shardId-000000000000", "shardId-000000000001"]

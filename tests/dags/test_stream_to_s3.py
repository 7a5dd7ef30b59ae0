"""The ``cognito_stream_to_s3`` DAG run with ``dag.test()`` against moto: it lands, emits the Asset
only when something landed, and fails loudly (still announcing what landed) when a shard fails."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cognito_streams.assets import LANDED_BATCHES
from cognito_streams.core.landing.checkpoints import Checkpoint
from cognito_streams.core.landing_format import LandedBatch, LandingLayout
from cognito_streams.landing_zone.checkpoints import CheckpointStore
from tests.landing_records import put_records, seed_records, with_records_pool
from tests.support.dag_params import load_dag

pytestmark = [pytest.mark.dag, pytest.mark.integration]


@pytest.fixture
def dag() -> Any:
    return load_dag("cognito_stream_to_s3")


@pytest.fixture
def stream(stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    name = f"dag-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=name, ShardCount=2)
    base = json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
    variable = {
        **base,
        "identity_pool_ids": with_records_pool(base["identity_pool_ids"]),
        "stream_name": name,
        "landing_prefix": f"dagtests/{name}",
    }
    monkeypatch.setenv("AIRFLOW_VAR_COGNITO_PIPELINE", json.dumps(variable))
    return variable


def asset_events(after: datetime) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == LANDED_BATCHES.uri, AssetEvent.timestamp > after)
            )
        )


def states(run: Any) -> dict[str, str]:
    return {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()
    }


def test_the_dag_lands_and_emits_the_asset_then_skips_when_idle(
    airflow_db: None, dag: Any, stream: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    # GIVEN records on a 2-shard stream
    put = put_records(aws("kinesis"), stream["stream_name"], seed_records(120, seed=21))
    started = datetime.now(UTC)
    # WHEN the DAG runs
    run = dag.test(logical_date=started)
    # THEN it succeeds, one landing task per shard, and the asset event lists the batch descriptors
    assert run.state == DagRunState.SUCCESS, states(run)
    assert sum(1 for k in states(run) if k.startswith("land_shard[")) == 2
    (event,) = asset_events(started)
    assert event.extra["records_read"] == 120 == event.extra["records_landed"]
    s3 = aws("s3")
    landed = 0
    for url in event.extra["descriptors"]:
        bucket, key = url.removeprefix("s3://").split("/", 1)
        descriptor = LandedBatch.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        landed += descriptor.kinesis_records_landed
    assert landed == len(put) and event.extra["batches"] == len(event.extra["descriptors"])
    # WHEN it runs again with nothing new  THEN it succeeds without emitting (the loader is not triggered)
    again = datetime.now(UTC)
    second = dag.test(logical_date=again + timedelta(seconds=1))
    assert second.state == DagRunState.SUCCESS, states(second)
    assert states(second)["publish_landed"] == "skipped"
    assert asset_events(again) == []


def test_a_failing_shard_fails_the_run_but_the_other_shards_batches_are_announced(
    airflow_db: None, dag: Any, stream: dict[str, Any], aws: Any
) -> None:
    from airflow.utils.state import DagRunState

    kinesis = aws("kinesis")
    put_records(kinesis, stream["stream_name"], seed_records(60, seed=22))
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream["stream_name"])["Shards"]]
    # GIVEN one shard whose checkpoint is older than the stream's retention
    layout = LandingLayout(stream["landing_bucket"], stream["landing_prefix"], stream["stream_name"])
    store = CheckpointStore(aws("s3"), layout, 900)
    old = datetime.now(UTC) - timedelta(days=3)
    stale = Checkpoint.new(stream["stream_name"], shards[0], old).model_copy(
        update={"sequence_number": "0", "last_arrived_at": old, "verified_at": old}
    )
    store.write(store.read(shards[0]), stale)
    started = datetime.now(UTC)
    # WHEN the DAG runs
    run = dag.test(logical_date=started)
    # THEN the run is failed (check_shards names the shard), yet the healthy shard's batches were announced
    assert run.state == DagRunState.FAILED
    got = states(run)
    assert got["check_shards"] == "failed" and got["publish_landed"] == "success"
    (event,) = asset_events(started)
    assert event.extra["records_landed"] > 0
    assert all(f"/{shards[1]}/" in url for url in event.extra["descriptors"])


def test_a_failed_announcement_fails_the_run(
    airflow_db: None, dag: Any, stream: dict[str, Any], aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_shards runs beside publish_landed, no longer after it (one task start less before the next
    landing run may start): a publish_landed that fails must still fail the run, by itself."""
    from airflow.utils.state import DagRunState

    from cognito_streams.landing import tasks

    put_records(aws("kinesis"), stream["stream_name"], seed_records(20, seed=23))

    def broken(outcomes: Any) -> None:
        raise RuntimeError("the asset event could not be written")

    # GIVEN records to land and an announcement that fails
    monkeypatch.setattr(tasks, "publish", broken)
    started = datetime.now(UTC)
    # WHEN the DAG runs
    run = dag.test(logical_date=started)
    # THEN every shard landed and check_shards passed, yet the run is red: its announcement failed
    got = states(run)
    assert [v for k, v in got.items() if k.startswith("land_shard[")] == ["success", "success"], got
    assert got["check_shards"] == "success", got
    assert got["publish_landed"] == "failed"
    assert run.state == DagRunState.FAILED, got
    assert asset_events(started) == []


def test_a_manual_run_naming_only_a_child_whose_parent_is_not_drained_is_refused(
    airflow_db: None, dag: Any, stream: dict[str, Any], aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to end green having read nothing: the child waits for its parent, which the filter
    left out, so the run the operator asked for did nothing and said so only in a log line."""
    from airflow.utils.state import DagRunState

    # GIVEN a manual run limited to a child shard whose parent is not drained yet
    kinesis = aws("kinesis")
    parent = kinesis.list_shards(StreamName=stream["stream_name"])["Shards"][0]
    kinesis.split_shard(
        StreamName=stream["stream_name"],
        ShardToSplit=parent["ShardId"],
        NewStartingHashKey=str(int(parent["HashKeyRange"]["EndingHashKey"]) // 2 + 1),
    )
    child = next(
        s["ShardId"] for s in kinesis.list_shards(StreamName=stream["stream_name"])["Shards"] if s.get("ParentShardId")
    )
    started = datetime.now(UTC)
    # WHEN the DAG runs
    run = dag.test(logical_date=started, run_conf={"shards": [child]})
    # THEN it is red: plan_shards names the child, the parent it waits for and what to do; nothing is announced
    assert run.state == DagRunState.FAILED, states(run)
    got = states(run)
    assert got["plan_shards"] == "failed" and got["check_shards"] == "failed"
    out = capsys.readouterr().out
    assert "the run's 'shards' param names shards this run cannot read" in out
    assert f"{child} waits for its parent(s) {parent['ShardId']}" in out and "add them to 'shards'" in out
    assert asset_events(started) == []

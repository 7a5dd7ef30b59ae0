"""Outages longer than the stream's retention, for every kind of checkpoint (issue 18, item 1), against
moto: each case fails loudly with ``MAY BE LOST`` and the repair it names works. (moto expires nothing,
so each test sets a checkpoint back in time, as a long outage would leave it.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cognito_streams.core.landing.checkpoints import Checkpoint
from cognito_streams.landing import runner
from cognito_streams.landing import tasks as landing_tasks
from tests.integration.test_landing import Landing, make_landing
from tests.integration.test_landing import resharding_aws as resharding_aws  # a fixture
from tests.landing_records import put_records, seed_records

pytestmark = pytest.mark.integration

DAG = "cognito_stream_to_s3"
REWIND_FIELDS = {"sequence_number", "last_arrived_at", "verified_at", "replay_from", "replay_until", "replay_run_id"}


def backdate(landing: Landing, shard_id: str, **fields: Any) -> Checkpoint:
    """Rewrite a shard's checkpoint with ``fields`` (an outage's effect: times far in the past)."""
    store = landing.ctx.store
    current = store.read(shard_id)
    changed = current.checkpoint.model_copy(update=fields)
    store.write(current, changed)
    return changed


def sent(put: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(p["ShardId"], p["SequenceNumber"]) for p in put}


def test_an_idle_shard_unread_for_longer_than_the_retention_fails_loudly(stack: Any, aws: Any) -> None:
    # GIVEN a shard that was caught up with nothing to land, last seen so 30 h ago on a 24 h stream
    landing = make_landing(aws)
    (shard_id,) = landing.shard_ids()
    (first,) = landing.run()
    assert first.status == "caught_up" and landing.checkpoint(shard_id).sequence_number is None
    assert landing.checkpoint(shard_id).verified_at is not None
    backdate(landing, shard_id, verified_at=datetime.now(UTC) - timedelta(hours=30))
    # AND records in it now (some of those that arrived meanwhile may have expired)
    put = put_records(landing.kinesis, landing.stream, seed_records(10, seed=31))
    # WHEN the shard is landed  THEN it fails with MAY BE LOST instead of reading its trim horizon silently
    with pytest.raises(runner.RecordsMayBeLostError, match="MAY BE LOST") as failure:
        landing.run()
    assert "last seen caught up" in str(failure.value) and landing.descriptors() == []
    # WHEN the operator acknowledges as the message says (after a bulk publish): the checkpoint deleted
    landing.s3.delete_object(Bucket=landing.settings.landing_bucket, Key=landing.ctx.layout.checkpoint_key(shard_id))
    landing.run()
    # THEN the shard is read from its trim horizon
    assert landing.landed_positions() == sent(put)


def test_a_shard_rewound_by_a_replay_and_not_read_in_time_fails_loudly(stack: Any, aws: Any) -> None:
    # GIVEN a shard rewound for a replay from 30 h ago that no run read since (a replay start inside the
    # retention when it was asked, outside it now), its earlier checkpoint as stale
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(10, seed=32))
    (shard_id,) = landing.shard_ids()
    long_ago = datetime.now(UTC) - timedelta(hours=40)
    backdate(landing, shard_id, sequence_number="0", last_arrived_at=long_ago, verified_at=long_ago)
    rewound = landing.checkpoint(shard_id).rewound(long_ago + timedelta(hours=10), "m1", long_ago)
    backdate(landing, shard_id, **rewound.model_dump(include=REWIND_FIELDS))
    # WHEN landed  THEN MAY BE LOST, naming the replay
    with pytest.raises(runner.RecordsMayBeLostError, match="rewound by a replay"):
        landing.run()
    assert landing.descriptors() == []
    # WHEN repaired with a replay from a time within the retention  THEN the shard lands from there
    landing.run(replay_from=datetime.now(UTC) - timedelta(hours=1), run_id="m2", owner="m2")
    assert landing.landed_positions() == sent(put)


def test_a_child_whose_parent_was_drained_after_a_long_outage_fails_loudly(resharding_aws: Any) -> None:
    # GIVEN a shard landed, then split, its children receiving records
    landing = make_landing(resharding_aws)
    put_records(landing.kinesis, landing.stream, seed_records(20, seed=33))
    landing.run()
    (parent,) = landing.shard_ids()
    landing.kinesis.split_shard(StreamName=landing.stream, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    children_put = put_records(landing.kinesis, landing.stream, seed_records(40, seed=34))
    children = sorted({p["ShardId"] for p in children_put})
    assert parent not in children and len(children) == 2
    # AND the parent drained, but last read before the split 30 h ago (the pipeline was off meanwhile)
    landing.run()
    assert landing.checkpoint(parent).finished
    long_ago = datetime.now(UTC) - timedelta(hours=30)
    backdate(landing, parent, last_arrived_at=long_ago, verified_at=long_ago)
    # WHEN the children are landed  THEN they fail with MAY BE LOST (their first records may have expired)
    with pytest.raises(runner.RecordsMayBeLostError, match="parent") as failure:
        landing.run()
    assert "replay_from" in str(failure.value) and "deleting its checkpoint does not help" in str(failure.value)
    assert all(landing.checkpoint(c).sequence_number is None for c in children)
    # WHEN repaired with a replay of the children from a time within the retention  THEN they land
    landing.run(replay_from=datetime.now(UTC) - timedelta(hours=1), only=children, run_id="m3", owner="m3")
    assert sent(children_put) <= landing.landed_positions()


def test_a_parent_gone_from_the_stream_before_its_end_fails_its_task_until_acknowledged(stack: Any, aws: Any) -> None:
    # GIVEN the checkpoint of a shard the stream no longer lists (aged out), not read to its end
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(10, seed=35))
    gone = "shardId-000000000099"
    long_ago = datetime.now(UTC) - timedelta(hours=30)
    store = landing.ctx.store
    store.write(
        store.read(gone),
        Checkpoint.new(landing.stream, gone, long_ago).model_copy(
            update={"sequence_number": "5", "last_arrived_at": long_ago, "verified_at": long_ago}
        ),
    )
    # WHEN a run is planned  THEN the listed shard is read, and the departed one gets a task too
    planned = landing_tasks.plan({}, DAG, "run-1", settings=landing.settings)
    assert [(p["shard_id"], p["departed"]) for p in planned] == [(landing.shard_ids()[0], False), (gone, True)]
    # AND that task fails with MAY BE LOST, saying how to acknowledge; the other shard lands
    landing_tasks.land(planned[0], DAG, "run-1", settings=landing.settings)
    with pytest.raises(runner.RecordsMayBeLostError, match="left the stream") as failure:
        landing_tasks.land(planned[1], DAG, "run-1", settings=landing.settings)
    assert "MAY BE LOST" in str(failure.value) and store.url(gone) in str(failure.value)
    assert landing.landed_positions() == sent(put)
    # WHEN acknowledged (after a bulk publish) by deleting the checkpoint  THEN the next runs no longer plan it
    landing.s3.delete_object(Bucket=landing.settings.landing_bucket, Key=landing.ctx.layout.checkpoint_key(gone))
    outcome = landing_tasks.land(planned[1], DAG, "run-1", settings=landing.settings)
    assert outcome["status"] == "acknowledged"
    assert [p["shard_id"] for p in landing_tasks.plan({}, DAG, "run-2", settings=landing.settings)] == [
        landing.shard_ids()[0]
    ]

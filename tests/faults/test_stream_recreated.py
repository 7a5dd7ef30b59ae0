"""The Kinesis stream deleted and re-created: Cognito turns streaming DISABLED and drops the changes
made meanwhile; ``cognito_streams_configure`` re-creates the stream, re-enables streaming and asks for
a bulk publish; the landing notices that its checkpoints belong to the deleted stream (shard ids
repeat, sequence numbers do not carry over) and reads the new stream from its trim horizon; the bulk
publish refills what was missed. The warehouse ends exact."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from local.dag_results import return_values as results
from local.emulator.control import EmulatorControl
from local.stack import Stack
from tests.support.faults import scenario

pytestmark = [pytest.mark.integration, pytest.mark.dag]


def test_stream_deleted_and_recreated_is_repaired_and_refilled(
    stack: Stack,
    emulator: str,
    aws: Any,
    fault_tmp: Path,
    pipeline_dags: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.utils.state import DagRunState

    ctl = EmulatorControl(emulator)
    with scenario("stream-recreated", "stream deleted and re-created", stack, aws, fault_tmp, shards=2,
                  seed=5) as sc:  # fmt: skip
        # GIVEN a pipeline that has landed and loaded some activity
        sc.activity.run(16, delete_share=0.1)
        sc.flush()
        sc.catch_up()
        # WHEN the stream is deleted while apps keep syncing
        aws("kinesis").delete_stream(StreamName=sc.settings.stream_name, EnforceConsumerDeletion=True)
        sc.activity.streaming = False  # what apps change from now on, Cognito does not stream
        sc.activity.sync()  # Cognito finds the stream gone: streaming turns DISABLED, the record is dropped
        sc.flush()
        streams = ctl.pool(sc.pool_id)["configuration"]["CognitoStreams"]
        assert streams["StreamingStatus"] == "DISABLED", streams
        sc.activity.run(10)  # dropped by Cognito while streaming is off (no dataset deletes: see operations.md)
        sc.flush()
        # THEN the landing is red while the stream is gone (nothing to read, nothing skipped)
        assert sc.attempt(sc.land) is None
        # WHEN cognito_streams_configure runs
        run = pipeline_dags["cognito_streams_configure"].test()
        assert run.state == DagRunState.SUCCESS
        out = results(run)
        # THEN it re-created the stream, re-enabled the pool and asked for a bulk publish of it
        assert out["ensure_stream"]["action"] == "created"
        assert out["configure_pools"]["needs_backfill"] == [sc.pool_id]
        sc.activity.streaming = True
        sc.activity.run(6)  # on the new stream
        # WHEN the bulk publish it asked for runs
        publish = pipeline_dags["cognito_bulk_publish"].test(run_conf=out["pools_to_backfill"])
        assert publish.state == DagRunState.SUCCESS
        assert results(publish)["bulk_publish"][0]["action"] == "published"
        sc.flush()
        # THEN the landing starts the new stream from its trim horizon, loudly, and everything is repaired
        with caplog.at_level(logging.WARNING, logger="cognito_streams.landing.runner"):
            sc.catch_up()
        assert "re-created" in caplog.text, caplog.text[-2000:]
        # AND the new stream's objects have their own folders (its sequence numbers may repeat the old ones)
        descriptors = [
            o["Key"]
            for o in aws("s3").list_objects_v2(
                Bucket=sc.settings.landing_bucket, Prefix=f"{sc.settings.landing_prefix}/batches/"
            )["Contents"]
        ]
        renamed = [k for k in descriptors if "@" in k.rsplit("/", 2)[-2]]
        assert renamed and len(renamed) < len(descriptors), descriptors
        sc.verify()


# -- the detection, pure and with a stand-in Kinesis -------------------------------------------------


def _checkpoint(**changes: Any) -> Any:
    from datetime import UTC, datetime

    from cognito_streams.core.landing.checkpoints import Checkpoint

    base = Checkpoint.new("s", "shardId-000000000000", datetime(2026, 1, 1, tzinfo=UTC))
    return base.model_copy(update=changes)


def test_a_checkpoint_knows_the_stream_it_was_written_for() -> None:
    from datetime import UTC, datetime, timedelta

    from cognito_streams.core.landing.checkpoints import from_other_stream

    created = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    # GIVEN a checkpoint of the stream created at `created` (through a JSON round trip)
    mine = type(_checkpoint()).model_validate_json(
        _checkpoint(stream_created_at=created, sequence_number="42", finished=True).model_dump_json()
    )
    # THEN the same stream is recognised, a re-created one is not, and an old checkpoint is not judged
    assert not from_other_stream(mine, created)
    assert from_other_stream(mine, created + timedelta(minutes=5))
    assert not from_other_stream(_checkpoint(), created)
    # AND starting over for the new stream forgets the position and the end marker, keeps the lease,
    # and gives the shard a folder of its own
    fresh = mine.for_new_stream(created + timedelta(minutes=5), created + timedelta(minutes=6))
    assert (fresh.sequence_number, fresh.finished, fresh.lease) == (None, False, mine.lease)
    assert fresh.key_suffix == "@20260301T120500123456Z"


class _Kinesis:
    """Answers like Kinesis to a checkpoint of another stream: InvalidArgumentException."""

    def __init__(self, created: Any, refuse: bool) -> None:
        self.created, self.refuse = created, refuse

    def stream_created_at(self, stream_name: str) -> Any:
        return self.created

    def shard_iterator(self, stream_name: str, shard_id: str, iterator_type: str, sequence_number: Any = None) -> str:
        from botocore.exceptions import ClientError

        if self.refuse:
            message = (
                f"StartingSequenceNumber {sequence_number} used in GetShardIterator on shard {shard_id} ... is invalid"
            )
            raise ClientError({"Error": {"Code": "InvalidArgumentException", "Message": message}}, "GetShardIterator")
        return "iterator"


@pytest.mark.parametrize("kinesis_refuses", [True, False])
def test_a_checkpoint_from_before_the_field_existed_is_judged_by_kinesis(kinesis_refuses: bool) -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from cognito_streams.landing.runner import ShardOutcome, _same_stream
    from cognito_streams.landing_zone.checkpoints import Versioned

    created = datetime(2026, 3, 1, tzinfo=UTC)
    # GIVEN a checkpoint written before checkpoints kept the stream's creation time
    old = _checkpoint(sequence_number="4959000000000000000000000000000000000000000000000000000042")
    ctx = SimpleNamespace(kinesis=_Kinesis(created, kinesis_refuses), settings=SimpleNamespace(stream_name="s"))
    held = [Versioned(old, '"etag"')]
    outcome = ShardOutcome("shardId-000000000000", "running")
    # WHEN the landing task checks it
    checkpoint = _same_stream(ctx, "shardId-000000000000", held, outcome)  # type: ignore[arg-type]
    # THEN Kinesis refusing its sequence number means another stream: start over, loudly; else it is adopted
    if kinesis_refuses:
        assert checkpoint.sequence_number is None and "re-created" in outcome.note
    else:
        assert checkpoint.sequence_number == old.sequence_number and outcome.note == ""
    assert checkpoint.stream_created_at == created and held[0].etag == '"etag"'

"""The landing DAG's logic end to end against moto Kinesis and S3: shards and resharding, crashes,
bad input, leases, retention, replay. (``S3Url`` payloads: test_landing_s3url.py.)"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.landing.checkpoints import Checkpoint
from cognito_streams.core.landing.shards import ShardInfo
from cognito_streams.core.landing_format import CHANGES_SCHEMA, REJECTS_SCHEMA, LandedBatch
from cognito_streams.landing import replay, runner
from cognito_streams.landing.runner import LandingContext, ShardOutcome, land_shard, plan_run
from cognito_streams.landing_zone.checkpoints import CheckpointConflictError, CheckpointStore, LeaseRefused
from cognito_streams.landing_zone.descriptors import list_batches
from cognito_streams.settings import PipelineSettings, parse_settings
from tests.landing_records import SAMPLES, bad_records, put_records, seed_records, with_records_pool
from tests.support.no_deletes import refusing_s3_deletes

pytestmark = pytest.mark.integration


@dataclass
class Landing:
    """One isolated stream + landing prefix on the session's moto, and helpers to run and inspect."""

    settings: PipelineSettings
    ctx: LandingContext
    kinesis: Any
    s3: Any
    runs: list[list[str]] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return self.settings.stream_name

    def run(self, owner: str | None = None, **plan_kwargs: Any) -> list[ShardOutcome]:
        """One DAG run's worth of work: plan, then land every readable shard."""
        owner = owner or f"test:{uuid.uuid4().hex[:6]}"
        plan, _ = plan_run(self.ctx, owner, **plan_kwargs)
        self.runs.append([s.shard_id for s in plan.readable])
        return [land_shard(self.ctx, shard, owner) for shard in plan.readable]

    def run_until_idle(self, max_runs: int = 20) -> list[ShardOutcome]:
        outcomes: list[ShardOutcome] = []
        for _ in range(max_runs):
            got = self.run()
            outcomes.extend(got)
            if all(o.records_read == 0 for o in got):
                return outcomes
        raise AssertionError("the stream did not drain")

    def shard_ids(self) -> list[str]:
        return [s["ShardId"] for s in self.kinesis.list_shards(StreamName=self.stream)["Shards"]]

    def descriptors(self) -> list[LandedBatch]:
        """The descriptors the loader lists (those a replay superseded left out)."""
        listing = list_batches(self.s3, self.ctx.layout, [self.ctx.layout.batches_prefix()])
        return [LandedBatch.model_validate_json(self.get(o.key)) for o in listing.live]

    def keys(self, prefix: str) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.settings.landing_bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents") or []}

    def get(self, key_or_url: str) -> bytes:
        key = key_or_url.split(f"s3://{self.settings.landing_bucket}/", 1)[-1]
        return self.s3.get_object(Bucket=self.settings.landing_bucket, Key=key)["Body"].read()

    def changes(self) -> pa.Table:
        tables = [pq.read_table(io.BytesIO(self.get(d.changes.url))) for d in self.descriptors() if d.changes]
        return pa.concat_tables(tables) if tables else CHANGES_SCHEMA.empty_table()

    def rejects(self) -> pa.Table:
        tables = [pq.read_table(io.BytesIO(self.get(d.rejects.url))) for d in self.descriptors() if d.rejects]
        return pa.concat_tables(tables) if tables else REJECTS_SCHEMA.empty_table()

    def landed_positions(self) -> set[tuple[str, str]]:
        """(shard, sequence number) of every Kinesis record landed or rejected."""
        changes = self.changes()
        rejects = self.rejects()
        return set(zip(changes["shard_id"].to_pylist(), changes["sequence_number"].to_pylist(), strict=True)) | set(
            zip(rejects["shard_id"].to_pylist(), rejects["sequence_number"].to_pylist(), strict=True)
        )

    def checkpoint(self, shard_id: str) -> Checkpoint:
        return self.ctx.store.read(shard_id).checkpoint


@pytest.fixture
def resharding_aws(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    """An in-process moto server whose Kinesis reshards like Kinesis does.

    moto 5.2.5 departs from Kinesis in three ways that matter here: PutRecords still routes to a
    closed parent (the first shard whose hash range matches), SplitShard moves the parent's records
    into the children with new sequence numbers, and MergeShards copies both parents' records into
    the child. In Kinesis a closed parent keeps its records and only new records go to the open
    children. This fixture corrects those three functions, in its own moto server.
    """
    import hashlib
    from collections import OrderedDict

    import boto3
    from moto.kinesis import models
    from moto.server import ThreadedMotoServer

    from local.procs import free_port

    def open_shard_for_key(self: Any, partition_key: str, explicit_hash_key: str | None) -> Any:
        key = int(explicit_hash_key) if explicit_hash_key else int(hashlib.md5(partition_key.encode()).hexdigest(), 16)  # noqa: S324
        for candidate in self.shards.values():
            if candidate.is_open and candidate.starting_hash <= key < candidate.ending_hash:
                return candidate
        return None

    def keeping_records(original: Callable[..., None], *names: str) -> Callable[..., None]:
        def reshard(self: Any, *args: Any) -> None:
            parents = [self.shards[args[i]] for i in range(len(names))]
            kept = [p.records for p in parents]
            for parent in parents:
                parent.records = OrderedDict()  # nothing for moto to move or copy
            original(self, *args)
            for parent, records in zip(parents, kept, strict=True):
                parent.records = records

        return reshard

    monkeypatch.setattr(models.Stream, "get_shard_for_key", open_shard_for_key)
    monkeypatch.setattr(models.Stream, "split_shard", keeping_records(models.Stream.split_shard, "parent"))
    monkeypatch.setattr(models.Stream, "merge_shards", keeping_records(models.Stream.merge_shards, "a", "b"))
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    base = json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
    client("s3").create_bucket(Bucket=base["landing_bucket"])
    try:
        yield client
    finally:
        server.stop()


def make_landing(aws: Any, shards: int = 1, **overrides: Any) -> Landing:
    stream = f"land-{uuid.uuid4().hex[:10]}"
    kinesis = aws("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    base = json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
    settings = parse_settings(
        {
            **base,
            "identity_pool_ids": with_records_pool(base["identity_pool_ids"]),
            "stream_name": stream,
            "landing_prefix": f"tests/{stream}",
            "batch_max_records": 100,
            "run_max_records": 1_000,
            "run_max_seconds": 30,
            **overrides,
        }
    )
    return Landing(settings, LandingContext.from_settings(settings), kinesis, aws("s3"))


def test_several_shards_land_every_record_exactly_once(stack: Any, aws: Any) -> None:
    # GIVEN a 3-shard stream with 450 records spread over the shards
    landing = make_landing(aws, shards=3)
    data = seed_records(450, seed=1)
    put = put_records(landing.kinesis, landing.stream, data)
    # WHEN the DAG's tasks run until the stream is drained
    outcomes = landing.run_until_idle()
    # THEN every record is landed once, from its own shard, in batches of at most 100 records
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}
    assert len({p["ShardId"] for p in put}) == 3
    assert sum(o.records_read for o in outcomes) == 450 == sum(o.records_landed for o in outcomes)
    descriptors = landing.descriptors()
    assert all(d.kinesis_records_read <= 100 for d in descriptors)
    assert sum(d.kinesis_records_read for d in descriptors) == 450
    # and each batch has its manifest, its changes file with the contract's schema, and no rejects
    for d in descriptors:
        assert d.changes and d.changes_manifest and d.rejects is None
        manifest = orjson.loads(landing.get(d.changes_manifest))
        assert manifest["entries"] == [
            {
                "url": d.changes.url,
                "mandatory": True,
                "meta": {"content_length": d.changes.bytes, "record_count": d.changes.rows},
            }
        ]
        assert pq.read_schema(io.BytesIO(landing.get(d.changes.url))).equals(CHANGES_SCHEMA)
    # and the values are exactly the ones sent
    sent = {}
    for p, raw in zip(put, data, strict=True):
        for index, item in enumerate(orjson.loads(raw)["kinesisSyncRecords"]):
            sent[(p["ShardId"], p["SequenceNumber"], index)] = item["value"] if item["op"] == "replace" else None
    changes = landing.changes().to_pylist()
    assert {(r["shard_id"], r["sequence_number"], r["record_index"]): r["record_value"] for r in changes} == sent


def test_split_and_merge_while_data_flows_lose_nothing_and_read_parents_first(resharding_aws: Any) -> None:
    landing = make_landing(resharding_aws, shards=1)
    sent: set[tuple[str, str]] = set()

    def put(n: int, seed: int) -> None:
        sent.update(
            (p["ShardId"], p["SequenceNumber"])
            for p in put_records(landing.kinesis, landing.stream, seed_records(n, seed=seed))
        )

    # GIVEN data flowing into one shard, partly landed
    put(120, 1)
    landing.run()
    put(80, 2)
    # WHEN the shard is split while more data arrives
    (parent,) = landing.shard_ids()
    landing.kinesis.split_shard(StreamName=landing.stream, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    put(150, 3)
    children = [s for s in landing.shard_ids() if s != parent]
    # THEN the next run reads only the parent, to its end; the children wait
    landing.run()
    assert landing.runs[-1] == [parent]
    assert landing.checkpoint(parent).finished
    for child in children:
        assert landing.checkpoint(child).sequence_number is None
    # and the run after reads the children
    landing.run()
    assert landing.runs[-1] == sorted(children)
    # WHEN the two children are merged while data flows
    put(60, 4)
    landing.kinesis.merge_shards(StreamName=landing.stream, ShardToMerge=children[0], AdjacentShardToMerge=children[1])
    put(90, 5)
    (merged,) = [s for s in landing.shard_ids() if s not in (parent, *children)]
    landing.run()
    # THEN the merged shard waits for both parents, then is read
    assert merged not in landing.runs[-1]
    landing.run_until_idle()
    assert merged in {shard for run in landing.runs for shard in run}
    assert landing.landed_positions() == sent
    # and a drained parent is never scheduled again
    assert all(parent not in run for run in landing.runs[2:])


def test_a_crash_between_the_batch_and_its_checkpoint_loses_nothing(
    stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 300 records and a worker that dies right after writing its second batch, before the checkpoint moves
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(300, seed=7))
    (shard_id,) = landing.shard_ids()
    real_update = CheckpointStore.update
    calls = {"n": 0}

    def crashing_update(self: CheckpointStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected crash")
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(CheckpointStore, "update", crashing_update)
    monkeypatch.setattr(CheckpointStore, "release", lambda self, current, owner: current)  # dead: no clean-up
    with pytest.raises(RuntimeError, match="injected crash"):
        landing.run(owner="run-1")
    monkeypatch.undo()
    # THEN two batches are in S3 but the checkpoint is after the first only, and the dead run still holds the lease
    assert len(landing.descriptors()) == 2
    first = min(landing.descriptors(), key=lambda d: int(d.first_sequence_number))
    assert landing.checkpoint(shard_id).sequence_number == first.last_sequence_number
    # WHEN another run comes while the lease is live  THEN it leaves the shard alone
    (other,) = landing.run(owner="run-2")
    assert other.status == "leased" and other.records_read == 0
    # WHEN the crashed run is retried (same run: same lease owner)
    landing.run_until_idle.__func__  # noqa: B018 - documentation: the retry below is the same owner
    outcomes = landing.run(owner="run-1")
    # THEN it lands from the checkpoint on: nothing is lost; the second batch is landed again (same objects)
    assert outcomes[0].records_read == 200
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}
    assert len(landing.descriptors()) == 3


def test_a_crash_before_the_descriptor_leaves_the_batch_to_the_rerun(
    stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(150, seed=8))
    from cognito_streams.landing_zone.writer import BatchWriter

    real_put = BatchWriter._put

    def failing_put(self: BatchWriter, key: str, body: bytes, content_type: str) -> None:
        if "/batches/" in key:
            raise ConnectionError("injected: S3 unreachable while writing the descriptor")
        real_put(self, key, body, content_type)

    monkeypatch.setattr(BatchWriter, "_put", failing_put)
    with pytest.raises(ConnectionError):
        landing.run(owner="run-1")
    monkeypatch.undo()
    (shard_id,) = landing.shard_ids()
    assert landing.checkpoint(shard_id).sequence_number is None and landing.descriptors() == []
    landing.run_until_idle()
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}


def test_bad_input_is_quarantined_with_reason_raw_bytes_and_coordinates(stack: Any, aws: Any) -> None:
    # GIVEN every kind of bad record between good ones on one shard
    landing = make_landing(aws)
    bad = bad_records()
    data: list[bytes] = []
    for _, raw in bad:
        data += [SAMPLES["inline-replace"], raw]
    put = put_records(landing.kinesis, landing.stream, data)
    # WHEN landed
    (outcome,) = landing.run()
    # THEN read = landed + rejected, each bad one is in the rejects with its reason
    assert outcome.records_read == len(data) == outcome.records_landed + outcome.records_rejected
    assert outcome.records_rejected == len(bad)
    assert outcome.rejected_by_reason == dict(Counter(reason for reason, _ in bad))
    rejects = landing.rejects().to_pylist()
    by_sequence = {p["SequenceNumber"]: raw for p, raw in zip(put, data, strict=True)}
    expected = {put[2 * i + 1]["SequenceNumber"]: reason for i, (reason, _) in enumerate(bad)}
    assert {r["sequence_number"]: r["reason"] for r in rejects} == expected
    # and the raw bytes are in the .jsonl line the row points at
    for row in rejects:
        url, line = row["raw_ref"].split("#line=")
        entry = orjson.loads(landing.get(url).splitlines()[int(line) - 1])
        assert base64.b64decode(entry["raw_base64"]) == by_sequence[row["sequence_number"]]
        assert entry["reason"] == row["reason"] and entry["sequence_number"] == row["sequence_number"]
        assert row["raw_bytes"] == len(by_sequence[row["sequence_number"]])
    (descriptor,) = landing.descriptors()
    assert descriptor.rejects_manifest and descriptor.kinesis_records_rejected == len(bad)


def test_a_live_lease_keeps_a_second_run_out_and_two_concurrent_runs_read_once(stack: Any, aws: Any) -> None:
    landing = make_landing(aws)
    put_records(landing.kinesis, landing.stream, seed_records(50, seed=2))
    (shard_id,) = landing.shard_ids()
    shard = ShardInfo(shard_id)
    # GIVEN run A holds the lease
    held = landing.ctx.store.acquire(shard_id, "run-A")
    assert not isinstance(held, LeaseRefused)
    # WHEN run B tries  THEN it does not read the shard
    outcome = land_shard(landing.ctx, shard, "run-B")
    assert outcome.status == "leased" and "run-A" in outcome.note and landing.descriptors() == []
    landing.ctx.store.release(held, "run-A")
    # WHEN two runs start on the shard at the same time  THEN exactly one of them reads it
    results: list[ShardOutcome] = []
    threads = [
        threading.Thread(target=lambda o=o: results.append(land_shard(landing.ctx, shard, o))) for o in ("C", "D")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results) == ["caught_up", "leased"]
    assert sum(r.records_read for r in results) == 50


def test_a_checkpoint_written_by_someone_else_stops_the_run_without_moving_it(stack: Any, aws: Any) -> None:
    landing = make_landing(aws)
    (shard_id,) = landing.shard_ids()
    store = landing.ctx.store
    mine = store.acquire(shard_id, "run-A")
    assert not isinstance(mine, LeaseRefused)
    # someone takes over after our lease expired (a long pause of ours)
    later = datetime.now(UTC) + timedelta(seconds=landing.settings.checkpoint_lease_seconds + 1)
    theirs = store.acquire(shard_id, "run-B", now=later)
    assert not isinstance(theirs, LeaseRefused)
    with pytest.raises(CheckpointConflictError, match="changed by someone else"):
        store.update(mine, mine.checkpoint.model_copy(update={"sequence_number": "999"}), "run-A")
    assert store.read(shard_id).checkpoint.lease.owner == "run-B"  # type: ignore[union-attr]


def test_a_checkpoint_older_than_the_retention_fails_loudly_then_a_replay_repairs(stack: Any, aws: Any) -> None:
    # GIVEN a shard whose checkpoint is 2 days old on a 24 h stream, and whose oldest kept record is newer
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(30, seed=4))
    (shard_id,) = landing.shard_ids()
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    stale = Checkpoint.new(landing.stream, shard_id, two_days_ago).model_copy(
        update={"sequence_number": "0", "last_arrived_at": two_days_ago, "verified_at": two_days_ago}
    )
    store = landing.ctx.store
    store.write(store.read(shard_id), stale)
    # WHEN the shard is landed  THEN the task fails, says how much may be lost and how to repair; nothing moves
    with pytest.raises(runner.RecordsMayBeLostError, match="MAY BE LOST") as failure:
        landing.run()
    assert "about 24.0 h" in str(failure.value) and "cognito_bulk_publish" in str(failure.value)
    assert landing.checkpoint(shard_id).sequence_number == "0" and landing.descriptors() == []
    # WHEN repaired with a replay from a time within the retention  THEN the shard lands from there
    landing.run(replay_from=datetime.now(UTC) - timedelta(hours=1))
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}


def test_a_replay_relands_from_a_timestamp_and_marks_its_batches(stack: Any, aws: Any) -> None:
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(120, seed=6))
    landing.run_until_idle()
    first = {d.batch_id for d in landing.descriptors()}
    assert not any(d.replay for d in landing.descriptors())
    layout = landing.ctx.layout
    first_keys = landing.keys(layout.batches_prefix())
    # WHEN a manual run replays from an hour ago, with S3 as the worker's IAM policy makes it (no deletes)
    with refusing_s3_deletes() as refused:
        outcomes = landing.run(
            owner="manual__replay", replay_from=datetime.now(UTC) - timedelta(hours=1), run_id="manual__replay"
        )
    assert refused == []
    # THEN everything is read again (duplicates for the loader to absorb), in batches marked replay, named
    # apart from the first landing's (the loader must load them: it skips descriptors it loaded)
    assert sum(o.records_read for o in outcomes) == 120
    replayed = landing.descriptors()
    assert all(d.replay and "~replay-" in d.batch_id for d in replayed)
    assert {d.batch_id.replace(d.batch_id.split("/")[1], d.shard_id) for d in replayed} == first  # same cuts
    # AND the first landing's descriptors, whose records the replay landed again, are superseded by one
    # marker each under _superseded/, and still there: nothing was deleted
    assert sum(o.batches_superseded for o in outcomes) == len(first) == len(first_keys)
    markers = landing.keys(f"{landing.settings.landing_prefix}/_superseded/batches/")
    assert markers == {layout.superseded_key(k) for k in first_keys}
    assert first_keys <= landing.keys(layout.batches_prefix())
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}
    # AND superseding again (a retry of the replay's last batch) writes no second marker and counts nothing
    (checkpoint_shard,) = {o.shard_id for o in outcomes}
    replayed_batches = sorted(landing.descriptors(), key=lambda d: int(d.first_sequence_number))
    token = replayed_batches[0].batch_id.split("/")[1].split("~", 1)[1]
    again = replay.supersede_replayed(
        landing.ctx.s3,
        landing.ctx.layout,
        checkpoint_shard,
        token,
        replayed_batches[0].first_sequence_number,
        replayed_batches[-1].last_sequence_number,
        replayed_batches[0].first_arrived_at,
        replayed_batches[-1].last_arrived_at,
    )
    assert again == 0 and landing.keys(f"{landing.settings.landing_prefix}/_superseded/batches/") == markers
    # and the next scheduled run continues normally (nothing left to read, no rewind again)
    assert all(o.records_read == 0 for o in landing.run())


def test_a_replay_outside_the_retention_is_refused(stack: Any, aws: Any) -> None:
    landing = make_landing(aws)
    with pytest.raises(replay.ReplayOutOfRangeError, match="older than the stream's retention"):
        landing.run(replay_from=datetime.now(UTC) - timedelta(hours=30))
    with pytest.raises(replay.ReplayOutOfRangeError, match="future"):
        landing.run(replay_from=datetime.now(UTC) + timedelta(hours=1))


def test_an_unknown_shard_in_the_filter_is_refused(stack: Any, aws: Any) -> None:
    landing = make_landing(aws)
    with pytest.raises(ValueError, match="not shards of stream"):
        landing.run(only=["shardId-999"])


def test_a_failed_task_gives_its_lease_back_after_moving_the_checkpoint(
    stack: Any, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a task that lands one batch, moves the checkpoint, then fails on the second batch
    landing = make_landing(aws)
    put = put_records(landing.kinesis, landing.stream, seed_records(150, seed=12))
    from cognito_streams.landing_zone.writer import BatchWriter

    real_put = BatchWriter._put
    descriptors = {"n": 0}

    def failing_second_descriptor(self: BatchWriter, key: str, body: bytes, content_type: str) -> None:
        if "/batches/" in key:
            descriptors["n"] += 1
            if descriptors["n"] == 2:
                raise ConnectionError("injected: S3 unreachable")
        real_put(self, key, body, content_type)

    monkeypatch.setattr(BatchWriter, "_put", failing_second_descriptor)
    with pytest.raises(ConnectionError):
        landing.run(owner="run-1")
    monkeypatch.undo()
    (shard_id,) = landing.shard_ids()
    checkpoint = landing.checkpoint(shard_id)
    # THEN the checkpoint is after the first batch and the lease was given back
    assert checkpoint.sequence_number is not None and checkpoint.lease is None
    # so another run lands the rest at once
    (outcome,) = landing.run(owner="run-2")
    assert outcome.status == "caught_up" and outcome.records_read == 50
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}

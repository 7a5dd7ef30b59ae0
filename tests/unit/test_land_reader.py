"""The shard reader against a scripted Kinesis (the boundary): limits, throttling, expired iterators,
the end of a closed shard."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cognito_streams.core.landing.shards import ShardInfo
from cognito_streams.landing.reader import ReadLimits, ShardReader, StartPosition

ARRIVED = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def kinesis_record(seq: int, size: int = 10) -> dict[str, Any]:
    return {
        "SequenceNumber": str(seq),
        "Data": b"x" * size,
        "PartitionKey": "pk",
        "ApproximateArrivalTimestamp": ARRIVED,
    }


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


class ScriptedKinesis:
    """Serves a shard's records; ``script`` injects errors before given GetRecords calls."""

    def __init__(self, records: int, closed: bool = False, page: int = 3, script: dict[int, str] | None = None) -> None:
        self.records = [kinesis_record(i + 1) for i in range(records)]
        self.closed = closed
        self.page = page
        self.script = dict(script or {})
        self.calls = 0
        self.iterators: list[tuple[str, str | None]] = []

    def shard_iterator(
        self,
        stream_name: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
        timestamp: Any = None,
    ) -> str:
        self.iterators.append((iterator_type, sequence_number))
        if iterator_type == "AFTER_SEQUENCE_NUMBER":
            assert sequence_number is not None
            return f"pos:{int(sequence_number)}"
        return "pos:0"

    def get_records(self, shard_iterator: str, limit: int) -> dict[str, Any]:
        self.calls += 1
        if self.calls in self.script:
            raise client_error(self.script.pop(self.calls))
        position = int(shard_iterator.split(":")[1])
        chunk = self.records[position : position + min(limit, self.page)]
        end = position + len(chunk)
        at_end = end >= len(self.records)
        return {
            "Records": chunk,
            "NextShardIterator": None if (self.closed and at_end and not chunk) else f"pos:{end}",
            "MillisBehindLatest": 0 if at_end else 1000 * (len(self.records) - end),
        }


SHARD = ShardInfo("shardId-000000000000", starting_sequence_number="1")
LIMITS = ReadLimits(
    batch_max_records=4, batch_max_bytes=10_000, run_max_records=100, run_max_seconds=60, get_records_limit=3
)


def read_all(reader: ShardReader) -> list[list[str]]:
    return [b.records.sequence_numbers for b in reader.batches()]


def test_batches_respect_batch_max_records_and_the_reader_stops_at_the_tip() -> None:
    kinesis = ScriptedKinesis(10)
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    batches = list(reader.batches())
    assert [b.records.sequence_numbers for b in batches] == [
        ["1", "2", "3", "4"],
        ["5", "6", "7", "8"],
        ["9", "10"],
    ]
    assert batches[-1].caught_up and not batches[-1].shard_ended
    assert reader.stats.stopped_because == "caught up with the tip of the shard" and reader.stats.lag_ms == 0


def test_batch_max_bytes_cuts_batches_too() -> None:
    kinesis = ScriptedKinesis(6)
    limits = ReadLimits(
        batch_max_records=100, batch_max_bytes=25, run_max_records=100, run_max_seconds=60, get_records_limit=3
    )
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), limits, sleep=lambda s: None)
    assert [len(b) for b in read_all(reader)] == [3, 3, 0]


def test_run_max_records_bounds_the_run_exactly() -> None:
    kinesis = ScriptedKinesis(50)
    limits = ReadLimits(
        batch_max_records=4, batch_max_bytes=10_000, run_max_records=7, run_max_seconds=60, get_records_limit=3
    )
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), limits, sleep=lambda s: None)
    assert read_all(reader) == [["1", "2", "3", "4"], ["5", "6", "7"]]
    assert "run_max_records" in reader.stats.stopped_because and reader.stats.lag_ms and reader.stats.lag_ms > 0


def test_run_max_seconds_bounds_the_run() -> None:
    ticks = iter(range(1000))
    kinesis = ScriptedKinesis(50)
    limits = ReadLimits(
        batch_max_records=100, batch_max_bytes=10_000, run_max_records=100, run_max_seconds=3, get_records_limit=3
    )
    reader = ShardReader(
        kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), limits, clock=lambda: next(ticks), sleep=lambda s: None
    )
    (only,) = read_all(reader)
    assert only == [str(i) for i in range(1, 7)] and "run_max_seconds" in reader.stats.stopped_because


def test_throttling_backs_off_and_keeps_the_iterator() -> None:
    naps: list[float] = []
    kinesis = ScriptedKinesis(
        5, script={1: "ProvisionedThroughputExceededException", 2: "ProvisionedThroughputExceededException"}
    )
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=naps.append)
    assert read_all(reader) == [["1", "2", "3", "4"], ["5"]]
    assert reader.stats.throttled == 2 and len(naps) >= 2 and naps[1] > naps[0] / 2
    assert len(kinesis.iterators) == 1  # no new iterator was needed


def test_an_expired_iterator_is_renewed_after_the_last_record_read() -> None:
    kinesis = ScriptedKinesis(9, script={3: "ExpiredIteratorException"})
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    got = [seq for batch in read_all(reader) for seq in batch]
    assert got == [str(i) for i in range(1, 10)]  # nothing lost, nothing twice
    assert kinesis.iterators == [("TRIM_HORIZON", None), ("AFTER_SEQUENCE_NUMBER", "6")]
    assert reader.stats.iterators_renewed == 1


def test_reading_starts_after_the_checkpoint() -> None:
    kinesis = ScriptedKinesis(6)
    start = StartPosition("AFTER_SEQUENCE_NUMBER", sequence_number="4")
    reader = ShardReader(kinesis, "s", SHARD, start, LIMITS, sleep=lambda s: None)
    assert read_all(reader) == [["5", "6"]]


def test_a_closed_shard_ends_with_a_last_batch_marked_ended() -> None:
    closed = ShardInfo("shardId-000000000000", starting_sequence_number="1", ending_sequence_number="5")
    kinesis = ScriptedKinesis(5, closed=True)
    reader = ShardReader(kinesis, "s", closed, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    batches = list(reader.batches())
    assert batches[-1].shard_ended and reader.stats.stopped_because == "end of the closed shard reached"
    assert [s for b in batches for s in b.records.sequence_numbers] == ["1", "2", "3", "4", "5"]


def test_other_errors_are_raised() -> None:
    kinesis = ScriptedKinesis(3, script={1: "ResourceNotFoundException"})
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        read_all(reader)


def test_arrival_times_are_epoch_milliseconds() -> None:
    kinesis = ScriptedKinesis(1)
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    (batch,) = list(reader.batches())
    assert batch.records.arrived_at_ms == [int(ARRIVED.timestamp() * 1000)]


def test_records_given_back_come_first_in_the_next_batch_and_are_not_counted_twice() -> None:
    # GIVEN a consumer that lands only the first 2 records of each batch it gets (a batch cut short by its
    # S3Url payloads' bytes) and gives the rest back
    kinesis = ScriptedKinesis(10)
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    landed: list[list[str]] = []
    flags = []
    for batch in reader.batches():
        sequence_numbers = batch.records.sequence_numbers
        if len(sequence_numbers) > 2:
            reader.give_back(len(sequence_numbers) - 2)
            sequence_numbers = sequence_numbers[:2]
        landed.append(sequence_numbers)
        flags.append(batch.caught_up)
    # THEN every record is landed once, in order; the end of the shard comes with the last records
    assert [s for batch in landed for s in batch] == [str(i) for i in range(1, 11)]
    assert all(len(b) <= 2 for b in landed) and flags[-1] and not any(flags[:-1])
    assert reader.stats.records == 10


def test_giving_back_a_whole_batch_or_nothing_is_refused() -> None:
    kinesis = ScriptedKinesis(3)
    reader = ShardReader(kinesis, "s", SHARD, StartPosition("TRIM_HORIZON"), LIMITS, sleep=lambda s: None)
    batch = next(reader.batches())
    with pytest.raises(ValueError, match="cannot give back"):
        reader.give_back(len(batch.records))
    with pytest.raises(ValueError, match="cannot give back"):
        reader.give_back(0)

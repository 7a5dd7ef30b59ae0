"""Read one shard in bounded batches, within Kinesis' limits.

- Starts from a position: TRIM_HORIZON, AFTER_SEQUENCE_NUMBER (the checkpoint) or AT_TIMESTAMP.
- Cuts the records into batches of at most ``batch_max_records`` / ``batch_max_bytes``, and stops
  after ``run_max_records`` records or ``run_max_seconds``: a large backlog drains over several runs
  with memory bounded by one batch and one GetRecords response.
- Backs off (exponential, with jitter) on ProvisionedThroughputExceededException and
  LimitExceededException; gets a fresh iterator when one expires (they live 5 minutes).
- Reports MillisBehindLatest as the lag.
- Knows when to stop: the end of a closed shard (no next iterator), or caught up with the tip.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from cognito_streams.core.decode import KinesisRecords
from cognito_streams.core.landing.shards import ShardInfo

log = logging.getLogger(__name__)

THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"})
#: Kinesis allows 5 GetRecords calls per second per shard; polling an idle shard faster is wasted.
IDLE_POLL_SECONDS = 0.25
BACKOFF_BASE_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0


class KinesisReadClient(Protocol):
    """What the reader needs from :class:`~cognito_streams.hooks.kinesis_reader.KinesisReaderHook`."""

    def shard_iterator(
        self,
        stream_name: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """GetShardIterator."""
        ...

    def get_records(self, shard_iterator: str, limit: int) -> dict[str, Any]:
        """GetRecords."""
        ...


@dataclass(frozen=True)
class StartPosition:
    """Where to start reading a shard."""

    iterator_type: str  # TRIM_HORIZON | AFTER_SEQUENCE_NUMBER | AT_TIMESTAMP
    sequence_number: str | None = None
    timestamp: datetime | None = None

    def describe(self) -> str:
        """For the logs."""
        if self.iterator_type == "AFTER_SEQUENCE_NUMBER":
            return f"after sequence number {self.sequence_number}"
        if self.iterator_type == "AT_TIMESTAMP" and self.timestamp is not None:
            return f"at {self.timestamp.isoformat()}"
        return "from the trim horizon (oldest record kept)"


@dataclass(frozen=True)
class ReadLimits:
    """Bounded work (the settings of the same names)."""

    batch_max_records: int
    batch_max_bytes: int
    run_max_records: int
    run_max_seconds: float
    get_records_limit: int


@dataclass
class ReadBatch:
    """Records to land as one batch."""

    records: KinesisRecords
    bytes: int
    #: The shard is closed and this batch holds its last records (or the end was reached with none).
    shard_ended: bool = False
    #: The reader saw the shard's tip (an empty response with MillisBehindLatest 0) after this batch.
    caught_up: bool = False
    lag_ms: int | None = None


@dataclass
class ReadStats:
    """What happened while reading, for the logs and the task's return value."""

    get_records_calls: int = 0
    throttled: int = 0
    iterators_renewed: int = 0
    records: int = 0
    bytes: int = 0
    lag_ms: int | None = None
    stopped_because: str = ""
    #: time of the last response that showed the shard caught up at the position read so far
    caught_up_at: float | None = None
    notes: list[str] = field(default_factory=list)


class ShardReader:
    """Iterate over one shard's records as :class:`ReadBatch` es."""

    def __init__(
        self,
        client: KinesisReadClient,
        stream_name: str,
        shard: ShardInfo,
        start: StartPosition,
        limits: ReadLimits,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.stream_name = stream_name
        self.shard = shard
        self.start = start
        self.limits = limits
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.stats = ReadStats()
        self._last_sequence: str | None = start.sequence_number
        #: Throttled calls in a row: the backoff grows with these and starts over after a success.
        self._throttled_in_a_row = 0
        #: Records of the batch just yielded that the consumer gave back (:meth:`give_back`).
        self._given_back = 0
        self._last_batch_size = 0

    def give_back(self, count: int) -> None:
        """The last ``count`` records of the batch just yielded were not landed (the batch was cut short,
        e.g. by its ``S3Url`` payloads' bytes): yield them again, first in the next batch. The run limits
        do not count them twice."""
        if not 0 < count < self._last_batch_size:
            raise ValueError(f"cannot give back {count} of a batch of {self._last_batch_size} records")
        self._given_back = count

    def _taken_back(self, yielded: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The records given back after ``yielded`` was yielded (a new buffer), and their bytes."""
        count, self._given_back = self._given_back, 0
        tail = yielded[len(yielded) - count :] if count else []
        return tail, sum(len(r["Data"]) for r in tail)

    def _iterator(self) -> str:
        if self._last_sequence is not None:
            return self.client.shard_iterator(
                self.stream_name, self.shard.shard_id, "AFTER_SEQUENCE_NUMBER", sequence_number=self._last_sequence
            )
        return self.client.shard_iterator(
            self.stream_name,
            self.shard.shard_id,
            self.start.iterator_type,
            sequence_number=self.start.sequence_number,
            timestamp=self.start.timestamp,
        )

    def _get_records(self, iterator: str) -> tuple[dict[str, Any] | None, bool]:
        """One GetRecords call: ``(response, False)``, or ``(None, renew)`` when throttled (after
        backing off; the iterator stays valid) or when the iterator expired (``renew``)."""
        self.stats.get_records_calls += 1
        try:
            response = self.client.get_records(iterator, self.limits.get_records_limit)
            self._throttled_in_a_row = 0
            return response, False
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in THROTTLED:
                self.stats.throttled += 1
                self._throttled_in_a_row += 1
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(self._throttled_in_a_row, 10))
                log.warning("shard %s: GetRecords throttled (%s), backing off %.2f s", self.shard.shard_id, code, delay)
                self.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not security
                return None, False
            if code == "ExpiredIteratorException":
                self.stats.iterators_renewed += 1
                log.info("shard %s: shard iterator expired, getting a fresh one", self.shard.shard_id)
                return None, True
            raise

    def batches(self) -> Iterator[ReadBatch]:
        """Read until a limit, the end of a closed shard, or the tip; yield full batches as they fill."""
        limits = self.limits
        started = self.clock()
        buffer: list[dict[str, Any]] = []
        buffered_bytes = 0
        iterator = self._iterator()
        lag: int | None = None
        ended = caught_up = False
        while True:
            if self.stats.records >= limits.run_max_records:
                self.stats.stopped_because = f"run_max_records ({limits.run_max_records}) reached"
                break
            if self.clock() - started >= limits.run_max_seconds:
                self.stats.stopped_because = f"run_max_seconds ({limits.run_max_seconds:g}) reached"
                break
            response, renew = self._get_records(iterator)
            if response is None:
                if renew:
                    # Resumes after the last record read (buffered or yielded), else at the start.
                    iterator = self._iterator()
                continue
            records = response.get("Records") or []
            lag = response.get("MillisBehindLatest")
            self.stats.lag_ms = lag
            next_iterator = response.get("NextShardIterator")
            room = limits.run_max_records - self.stats.records
            truncated = len(records) > room
            if truncated:
                # Keep the run bound exact; the rest is read again next run (after the checkpoint).
                records = records[:room]
            for record in records:
                size = len(record["Data"])
                buffer.append(record)
                buffered_bytes += size
                self.stats.records += 1
                self.stats.bytes += size
                self._last_sequence = record["SequenceNumber"]
                if len(buffer) >= limits.batch_max_records or buffered_bytes >= limits.batch_max_bytes:
                    yield self._batch(buffer, buffered_bytes, lag=lag)
                    buffer, buffered_bytes = self._taken_back(buffer)
            if truncated:
                continue  # the run limit check above stops the loop
            if next_iterator is None:
                ended = True
                self.stats.stopped_because = "end of the closed shard reached"
                break
            if not records and lag == 0:
                caught_up = True
                self.stats.caught_up_at = self.wall_clock()
                if self.shard.is_closed:
                    # A closed shard never gets more records: an empty response at its tip is its end
                    # (some implementations keep returning an iterator there).
                    ended = True
                    self.stats.stopped_because = "end of the closed shard reached"
                else:
                    self.stats.stopped_because = "caught up with the tip of the shard"
                break
            iterator = next_iterator
            if not records:
                self.sleep(IDLE_POLL_SECONDS)
        if buffer or ended or caught_up:
            while True:
                # The end (or the tip) is after these records: a batch cut short gives its rest back, which
                # comes again with the flags.
                yield self._batch(buffer, buffered_bytes, lag=lag, ended=ended, caught_up=caught_up)
                buffer, buffered_bytes = self._taken_back(buffer)
                if not buffer:
                    break

    def _batch(
        self,
        buffer: list[dict[str, Any]],
        size: int,
        lag: int | None,
        ended: bool = False,
        caught_up: bool = False,
    ) -> ReadBatch:
        self._last_batch_size = len(buffer)
        records = KinesisRecords(
            data=[r["Data"] for r in buffer],
            sequence_numbers=[r["SequenceNumber"] for r in buffer],
            arrived_at_ms=[_epoch_ms(r["ApproximateArrivalTimestamp"]) for r in buffer],
            partition_keys=[r.get("PartitionKey", "") for r in buffer],
        )
        return ReadBatch(records=records, bytes=size, shard_ended=ended, caught_up=caught_up, lag_ms=lag)


def _epoch_ms(value: datetime | float) -> int:
    """ApproximateArrivalTimestamp (a datetime from boto3, or epoch seconds) in epoch milliseconds."""
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    return round(seconds * 1000)

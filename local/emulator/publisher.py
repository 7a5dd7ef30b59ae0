"""Getting stream records onto Kinesis, as Cognito Streams does.

- :class:`KinesisSender` puts records with the publish role's credentials, turning any record too
  large for the threshold into an ``S3Url`` record (payload in S3, presigned GET URL), retrying
  throttles and partial failures, and telling apart a target that is gone (stream deleted, role no
  longer assumable: streaming must turn DISABLED) from a passing failure (retry).
- :class:`Publisher` drains the durable outbox in order, batching up to 500 records per PutRecords:
  the API answers as soon as the change is committed, and a crash never loses a record that was
  answered (the outbox is in the store; delivery is at least once, as with Cognito).
- :class:`PayloadReaper` deletes each S3 payload when its URL expires. moto does not enforce
  presigned URL expiry, so without this an "expired" URL would keep working.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from local.emulator import stream_format
from local.emulator.aws import AwsGateway, error_code
from local.emulator.errors import ApiError
from local.emulator.service import CognitoSync, OutboxEntry, StreamTarget
from local.emulator.stats import Stats
from local.emulator.store import Store

log = logging.getLogger(__name__)

PUT_RECORDS_MAX_RECORDS = 500
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024
ATTEMPTS = 6
#: Kinesis answers these when the caller's credentials may not write the stream: the role is unusable.
ACCESS_ERRORS = ("AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException")


class TargetGoneError(Exception):
    """The stream or the role cannot be used any more: Cognito turns streaming off."""


class PublishError(Exception):
    """Kinesis or S3 kept failing after retries (throttling, the endpoint unreachable, ...)."""


class PayloadReaper:
    """Deletes S3Url payload objects when their presigned URLs expire (real time)."""

    def __init__(self, aws: AwsGateway, store: Store) -> None:
        self.aws = aws
        self.store = store
        self._heap: list[tuple[int, str, str]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="payload-reaper", daemon=True)

    def start(self, pending: list[tuple[str, str, int]]) -> None:
        """Start, with the payloads the store remembers from before a restart."""
        for bucket, key, expires_ms in pending:
            heapq.heappush(self._heap, (expires_ms, bucket, key))
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (payloads still pending are deleted after the next start)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def schedule(self, bucket: str, key: str, expires_ms: int) -> None:
        """Delete ``bucket/key`` at ``expires_ms`` (epoch ms, real time)."""
        self.store.add_payload(bucket, key, expires_ms)
        with self._cond:
            heapq.heappush(self._heap, (expires_ms, bucket, key))
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.time() * 1000):
                    wait = (self._heap[0][0] / 1000 - time.time()) if self._heap else None
                    self._cond.wait(timeout=None if wait is None else max(wait, 0.01))
                if self._stopping:
                    return
                _expires_ms, bucket, key = heapq.heappop(self._heap)
            try:
                self.aws.delete_payload(bucket, key)
            except (ClientError, BotoCoreError) as err:
                log.warning("could not delete expired payload s3://%s/%s (%s); retrying in 5 s", bucket, key, err)
                with self._cond:
                    heapq.heappush(self._heap, (int(time.time() * 1000) + 5000, bucket, key))
                continue
            self.store.remove_payload(bucket, key)


class KinesisSender:
    """PutRecords with the role's credentials; large records become S3Url records first."""

    def __init__(self, service: CognitoSync, aws: AwsGateway, reaper: PayloadReaper, stats: Stats) -> None:
        self.service = service
        self.aws = aws
        self.reaper = reaper
        self.stats = stats

    def send(self, target: StreamTarget, items: list[tuple[str, bytes]]) -> None:
        """Put ``(partition key, data)`` items on the target stream, in order.

        Raises :class:`TargetGoneError` (streaming must turn off) or :class:`PublishError` (try later).
        """
        settings = self.service.settings
        try:
            problem = self.aws.role_problem(target.role_arn, settings.role_check_cache_seconds)
        except ApiError as err:
            raise PublishError(err.message) from err
        if problem:
            raise TargetGoneError(problem)
        client = self.aws.kinesis_for_role(target.role_arn)
        prepared = [self._prepare(key, data) for key, data in items]
        for chunk in _chunks(prepared):
            self._put(client, target.stream_name, chunk)

    def _prepare(self, key: str, data: bytes) -> tuple[str, bytes]:
        settings = self.service.settings
        if stream_format.fits_inline(data, key, settings.s3url_threshold_bytes):
            self.stats.add("stream_records_inline")
            return key, data
        record, body = stream_format.split_for_s3(data)
        object_key = (
            f"{record['identityPoolId']}/{record['identityId']}/{record['dataSetName']}/"
            f"{record['syncCount']}-{record['lastModifiedDate']}-{uuid.uuid4().hex[:12]}.json"
        )
        expiry = settings.presigned_url_expiry_seconds
        for attempt in range(ATTEMPTS):
            try:
                url = self.aws.put_payload(settings.payload_bucket, object_key, body, expiry)
                break
            except (ClientError, BotoCoreError) as err:
                if attempt == ATTEMPTS - 1:
                    raise PublishError(f"could not store an S3Url payload in {settings.payload_bucket}: {err}") from err
                time.sleep(0.2 * 2**attempt)
        self.reaper.schedule(settings.payload_bucket, object_key, int(time.time() * 1000) + expiry * 1000)
        self.stats.add("stream_records_s3url")
        return key, stream_format.s3url_record(record, url)

    def _put(self, client: Any, stream: str, chunk: list[tuple[str, bytes]]) -> None:
        pending = chunk
        for attempt in range(ATTEMPTS):
            try:
                response = client.put_records(
                    StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for key, data in pending]
                )
            except ClientError as err:
                code = error_code(err)
                if code == "ResourceNotFoundException":
                    raise TargetGoneError(f"the Kinesis stream {stream} does not exist (PutRecords: {code})") from err
                if code in ACCESS_ERRORS:
                    raise TargetGoneError(
                        f"the publish role may not write to the Kinesis stream {stream} ({code})"
                    ) from err
                failure = f"{code}: {err}"
            except BotoCoreError as err:
                failure = str(err)
            else:
                self.stats.add("kinesis_put_records_calls")
                results = response.get("Records", [])
                failed = [item for item, res in zip(pending, results, strict=True) if "ErrorCode" in res]
                self.stats.add("stream_records_published", len(pending) - len(failed))
                if not failed:
                    return
                failure = f"{len(failed)} of {len(pending)} records failed ({results[0].get('ErrorCode', '?')} ...)"
                pending = failed
            if attempt < ATTEMPTS - 1:
                time.sleep(min(0.1 * 2**attempt, 2.0))
        raise PublishError(f"PutRecords to {stream} kept failing: {failure}")


def _chunks(items: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    """Split into PutRecords calls: at most 500 records and 5 MiB each."""
    chunks: list[list[tuple[str, bytes]]] = []
    current: list[tuple[str, bytes]] = []
    size = 0
    for key, data in items:
        item_size = len(data) + len(key.encode())
        if current and (len(current) >= PUT_RECORDS_MAX_RECORDS or size + item_size > PUT_RECORDS_MAX_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append((key, data))
        size += item_size
    if current:
        chunks.append(current)
    return chunks


class Publisher:
    """One thread draining the outbox in order; ``flush`` waits until it is empty."""

    def __init__(self, service: CognitoSync, sender: KinesisSender, store: Store, stats: Stats) -> None:
        self.service = service
        self.sender = sender
        self.store = store
        self.stats = stats
        self._queue: deque[OutboxEntry] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._generation = 0  # bumped by clear(): a batch taken before a reset must not pop newer entries
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def start(self, pending: list[OutboxEntry]) -> None:
        """Start, with the records the store still holds from before a restart."""
        self._queue.extend(pending)
        if pending:
            log.info("publishing %d stream records left from before the restart", len(pending))
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current batch (what is left stays in the outbox for the next start)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def enqueue(self, entry: OutboxEntry) -> None:
        """A committed change's stream record (called in commit order)."""
        with self._cond:
            self._queue.append(entry)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget queued records (reset)."""
        with self._cond:
            self._queue.clear()
            self._generation += 1
            self._cond.notify_all()

    def pending(self) -> int:
        """Records not yet on the stream (queued or being sent)."""
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued record is on the stream or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=left)
        return True

    def _take(self) -> tuple[StreamTarget | None, list[OutboxEntry], list[OutboxEntry]]:
        """From the head: entries to drop (their pool no longer streams) and the next run of entries
        going to one target. Called with the condition held."""
        drop: list[OutboxEntry] = []
        batch: list[OutboxEntry] = []
        target: StreamTarget | None = None
        size = 0
        for entry in self._queue:
            entry_target = self.service.streaming_target(entry.pool_id)
            if entry_target is None:
                if batch:
                    break
                drop.append(entry)
                continue
            if target is None:
                target = entry_target
            elif entry_target != target:
                break
            size += len(entry.data)
            if len(batch) >= PUT_RECORDS_MAX_RECORDS or (batch and size > PUT_RECORDS_MAX_BYTES):
                break
            batch.append(entry)
        return target, drop, batch

    def _done(self, entries: list[OutboxEntry], generation: int) -> None:
        self.store.remove_outbox([e.seq for e in entries])
        with self._cond:
            if generation == self._generation:
                for _ in entries:
                    self._queue.popleft()
            self._busy = False
            self._cond.notify_all()

    def _run(self) -> None:
        delay = 0.1
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                linger_until = time.monotonic() + self.service.settings.publish_linger_ms / 1000
                while (
                    not self._stopping
                    and len(self._queue) < PUT_RECORDS_MAX_RECORDS
                    and (left := linger_until - time.monotonic()) > 0
                ):
                    self._cond.wait(timeout=left)
                if self._stopping:
                    return
                target, drop, batch = self._take()
                generation = self._generation
                self._busy = True
            if drop:
                self.stats.add("stream_records_dropped_streaming_disabled", len(drop))
                self._done(drop, generation)
                continue
            assert target is not None  # noqa: S101 - a batch always has its target
            try:
                self.sender.send(target, [(e.partition_key, e.data) for e in batch])
            except TargetGoneError as gone:
                pools = sorted({e.pool_id for e in batch})
                self.service.disable_streaming(pools, _disabled_reason(target, str(gone)))
                with self._cond:
                    self._busy = False
                continue  # the batch is dropped on the next turn: its pools no longer stream
            except PublishError as err:
                log.warning("%d stream records not published yet (%s); retrying in %.1f s", len(batch), err, delay)
                with self._cond:
                    self._busy = False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self._done(batch, generation)


def _disabled_reason(target: StreamTarget, problem: str) -> str:
    return (
        f"Amazon Cognito Sync could not publish to the stream {target.stream_name} with the role "
        f"{target.role_arn}: {problem}. Fix it, then set StreamingStatus to ENABLED again with "
        "SetIdentityPoolConfiguration."
    )


class BulkRunner:
    """Runs each requested bulk publish in its own thread."""

    def __init__(self, service: CognitoSync, sender: KinesisSender, stats: Stats) -> None:
        self.service = service
        self.sender = sender
        self.stats = stats
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        #: ``POST /_emulator/faults``: the next bulk publish fails with this message after this many datasets.
        self.fail_next: tuple[str, int] | None = None

    def start(self, pool_id: str) -> None:
        """Run the pool's bulk publish (status already IN_PROGRESS)."""
        with self._lock:
            fault, self.fail_next = self.fail_next, None
            thread = threading.Thread(
                target=self._run, args=(pool_id, fault, self._cancel), name=f"bulk-{pool_id}", daemon=True
            )
            self._threads[pool_id] = thread
        thread.start()

    def cancel_all(self) -> None:
        """Stop running bulk publishes (reset, shutdown) and wait for them."""
        with self._lock:
            self._cancel.set()
            threads = list(self._threads.values())
            self._threads.clear()
            self._cancel = threading.Event()
            self.fail_next = None
        for thread in threads:
            thread.join(timeout=10)

    def _run(self, pool_id: str, fault: tuple[str, int] | None, cancel: threading.Event) -> None:
        started = time.monotonic()
        try:
            failure = self._publish(pool_id, fault, cancel)
        except Exception as err:  # a crashed worker must still end the bulk publish as FAILED
            log.exception("bulk publish of pool %s crashed", pool_id)
            failure = f"InternalError: {err}"
        if cancel.is_set():
            return
        settings = self.service.settings
        remaining = settings.bulk_publish_min_seconds - (time.monotonic() - started)
        if remaining > 0 and cancel.wait(remaining):
            return
        self.service.finish_bulk_publish(pool_id, failure)

    def _publish(self, pool_id: str, fault: tuple[str, int] | None, cancel: threading.Event) -> str | None:
        """Publish every dataset; return the failure message, or None on success."""
        target = self.service.streaming_target(pool_id)
        if target is None:
            return "Cognito Streams is not ENABLED for this identity pool"
        keys = self.service.dataset_keys(pool_id)
        rate = self.service.settings.bulk_publish_datasets_per_second
        batch: list[tuple[str, bytes]] = []
        size = 0
        done = 0
        t0 = time.monotonic()
        for identity, name in keys:
            if cancel.is_set():
                return None
            if fault is not None and done >= fault[1]:
                break
            item = self.service.current_state_record(pool_id, identity, name)
            if item is None:  # deleted since the list was taken
                continue
            batch.append(item)
            size += len(item[1])
            done += 1
            if len(batch) >= PUT_RECORDS_MAX_RECORDS or size >= PUT_RECORDS_MAX_BYTES // 2 or rate:
                failure = self._send(pool_id, target, batch)
                if failure:
                    return failure
                batch, size = [], 0
            if rate:
                ahead = done / rate - (time.monotonic() - t0)
                if ahead > 0 and cancel.wait(ahead):
                    return None
        failure = self._send(pool_id, target, batch) if batch else None
        if failure is None and fault is not None:
            failure = fault[0]  # injected by POST /_emulator/faults, after ``fault[1]`` datasets
        if failure is None:
            log.info("pool %s: bulk publish put %d datasets on %s", pool_id, done, target.stream_name)
        return failure

    def _send(self, pool_id: str, target: StreamTarget, batch: list[tuple[str, bytes]]) -> str | None:
        try:
            self.sender.send(target, batch)
        except TargetGoneError as gone:
            reason = _disabled_reason(target, str(gone))
            self.service.disable_streaming([pool_id], reason)
            return reason
        except PublishError as err:
            return f"Some records could not be published: {err}"
        self.stats.add("bulk_publish_records", len(batch))
        return None


def wire(service: CognitoSync, publisher: Publisher, bulk: BulkRunner) -> None:
    """Connect the service's hooks to the publisher and the bulk runner."""
    service.on_outbox = publisher.enqueue
    on_bulk: Callable[[str], None] = bulk.start
    service.on_bulk_start = on_bulk

"""The ``S3Url`` payloads of one batch: gathered within the batch's byte budget, each body kept in the
landing zone (``payloads/``) before anything else of the batch is written.

- **Kept bodies are used again.** A batch landed again (after a crash, a retry, a replay) finds the
  bodies its first landing kept under ``payloads/`` (one listing per batch) and reads them from there
  instead of fetching the presigned URLs again: those expire (Cognito's after about an hour), and a
  second fetch would turn a landed payload into an ``s3url_expired`` reject.
- **Memory is bounded.** A body is never held whole in memory while others are fetched: each is
  streamed into a spool (memory up to 64 KiB, then a temporary file) and kept in S3 from there, at most
  ``s3url_fetch_concurrency`` at a time. And the bodies count against ``batch_max_bytes`` with the
  Kinesis records: when a batch's records plus their payloads would pass it, the batch is cut before
  the record whose payload does not fit (a batch always keeps its first record), and the rest of the
  records go to the next batch. A bulk publish of large datasets therefore lands in several bounded
  batches instead of one that grows with the number of payloads.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import IO, Any

import pyarrow as pa
from botocore.exceptions import ClientError

from cognito_streams.core.decode import (
    Decoded,
    DecodeOptions,
    KinesisRecords,
    PendingPayload,
    Reject,
    RowSink,
    decode_records,
)
from cognito_streams.core.landing import s3url
from cognito_streams.core.landing_format import LandingLayout
from cognito_streams.landing.s3url import READ_CHUNK_BYTES, FetchResult, PayloadFetcher, spool

log = logging.getLogger(__name__)


class PayloadStore:
    """The kept ``S3Url`` bodies of one stream (``payloads/stream=<s>/<shard folder>/<seq>-<sub>.json``)."""

    def __init__(self, s3: Any, layout: LandingLayout) -> None:
        self.s3 = s3
        self.layout = layout

    def kept(self, folder: str, sequence_numbers: Sequence[str]) -> set[tuple[str, int]]:
        """``(sequence number, sub-sequence number)`` of the bodies kept for these records (one listing,
        narrowed to the sequence numbers' common prefix)."""
        wanted = set(sequence_numbers)
        if not wanted:
            return set()
        base = self.layout.payload_key(folder, "x", 0).rsplit("/", 1)[0] + "/"
        lengths = {len(s) for s in wanted}
        # Kinesis' sequence numbers of one shard have one length: list only the names starting with the
        # digits every one of them shares (moto's do not, then the shard's whole folder is listed).
        common = _common_prefix(sorted(wanted)) if len(lengths) == 1 else ""
        found: set[tuple[str, int]] = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.layout.bucket, Prefix=base + common):
            for item in page.get("Contents") or []:
                name = item["Key"][len(base) :]
                sequence, _, sub = name.removesuffix(".json").rpartition("-")
                if sequence in wanted and sub.isdigit() and name.endswith(".json"):
                    found.add((sequence, int(sub)))
        return found

    def url(self, folder: str, sequence_number: str, sub_sequence_number: int) -> str:
        """s3 URI of a kept body."""
        return self.layout.url(self.layout.payload_key(folder, sequence_number, sub_sequence_number))

    def open(self, folder: str, sequence_number: str, sub_sequence_number: int) -> FetchResult | None:
        """A kept body, streamed into a spool; None when it is not there (any more)."""
        key = self.layout.payload_key(folder, sequence_number, sub_sequence_number)
        try:
            response = self.s3.get_object(Bucket=self.layout.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body = spool()
        size = 0
        try:
            stream = response["Body"]
            while chunk := stream.read(READ_CHUNK_BYTES):
                body.write(chunk)
                size += len(chunk)
        except BaseException:
            body.close()
            raise
        body.seek(0)
        return FetchResult(body, attempts=0, size=size)

    def keep(self, folder: str, sequence_number: str, sub_sequence_number: int, body: IO[bytes]) -> str:
        """Keep a fetched body (streamed from its spool); returns its s3 URI. The spool is rewound."""
        key = self.layout.payload_key(folder, sequence_number, sub_sequence_number)
        body.seek(0)
        self.s3.put_object(Bucket=self.layout.bucket, Key=key, Body=body, ContentType="application/json")
        body.seek(0)
        return self.layout.url(key)


def _common_prefix(ordered: list[str]) -> str:
    first, last = ordered[0], ordered[-1]
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


@dataclass
class Gathered:
    """One payload: its body (``result.body``, a file) or why there is none, and where the body is kept."""

    payload: PendingPayload
    result: FetchResult
    kept_url: str | None = None
    #: The body was the one kept by an earlier landing of the batch (its URL was not fetched again).
    reused: bool = False


@dataclass
class Gathering:
    """The payloads of the records a batch keeps (stream order), and how many records it keeps."""

    items: list[Gathered] = field(default_factory=list)
    #: The batch keeps records ``[0, keep_records)``; the others go to the next batch (byte budget).
    keep_records: int = 0
    fetched: int = 0
    reused: int = 0
    failed: int = 0
    body_bytes: int = 0

    def close(self) -> None:
        """Free every body still open."""
        for item in self.items:
            item.result.close()


def gather(
    store: PayloadStore,
    fetcher: PayloadFetcher,
    folder: str,
    pending: Sequence[PendingPayload],
    records: KinesisRecords,
    max_bytes: int,
) -> Gathering:
    """The bodies of ``pending`` (the batch's ``S3Url`` payloads), kept ones read back, others fetched and
    kept, in stream order, until the batch's records plus their bodies would pass ``max_bytes``
    (``batch_max_bytes``): see the module docstring. The caller closes the bodies (:meth:`Gathering.close`)."""
    position = {sequence: i for i, sequence in enumerate(records.sequence_numbers)}
    ordered = sorted(pending, key=lambda p: (position[p.sequence_number], p.sub_sequence_number))
    # Kinesis bytes of records [0, i] for each i: what the batch holds besides the bodies.
    record_bytes = list(accumulate(len(d) for d in records.data))
    kept = store.kept(folder, sorted({p.sequence_number for p in ordered}))
    gathering = Gathering(keep_records=len(records))

    def work(payload: PendingPayload) -> Gathered:
        coordinates = (payload.sequence_number, payload.sub_sequence_number)
        if coordinates in kept:
            result = store.open(folder, *coordinates)
            if result is not None:
                return Gathered(payload, result, store.url(folder, *coordinates), reused=True)
        result = fetcher.fetch(payload.url)
        if result.body is None:
            return Gathered(payload, result)
        try:
            url = store.keep(folder, *coordinates, result.body)
        except BaseException:
            result.close()
            raise
        return Gathered(payload, result, url)

    in_flight: deque[Future[Gathered]] = deque()
    total = 0
    nxt = 0
    cut = False
    executor = ThreadPoolExecutor(max_workers=max(1, min(fetcher.concurrency, len(ordered) or 1)))
    try:
        while True:
            while not cut and nxt < len(ordered) and len(in_flight) < fetcher.concurrency:
                in_flight.append(executor.submit(work, ordered[nxt]))
                nxt += 1
            if not in_flight:
                break
            item = in_flight.popleft().result()
            if cut:
                item.result.close()  # fetched for a record left to the next batch, which finds it kept
                continue
            index = position[item.payload.sequence_number]
            size = item.result.size if item.result.ok else 0
            if index > 0 and record_bytes[index] + total + size > max_bytes:
                # This record's payloads do not fit: the batch ends before the record (with all its payloads).
                cut = True
                gathering.keep_records = index
                item.result.close()
                for dropped in [g for g in gathering.items if position[g.payload.sequence_number] >= index]:
                    dropped.result.close()
                    gathering.items.remove(dropped)
                    total -= dropped.result.size if dropped.result.ok else 0
                continue
            total += size
            gathering.items.append(item)
    except BaseException:
        for future in in_flight:
            future.cancel()
        for future in in_flight:
            if not future.cancelled():
                try:
                    future.result().result.close()
                except Exception as err:  # noqa: BLE001 - the error in flight is what the task raises
                    log.debug("payload fetch failed while stopping: %s", type(err).__name__)
        gathering.close()
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    for item in gathering.items:
        if item.reused:
            gathering.reused += 1
        elif item.result.ok:
            gathering.fetched += 1
        else:
            gathering.failed += 1
    gathering.body_bytes = total
    return gathering


def resolve_payloads(
    shard_id: str,
    decoded: Decoded,
    options: DecodeOptions,
    gathered: list[Gathered],
    sink: RowSink | None = None,
) -> None:
    """Turn the gathered ``S3Url`` bodies of ``decoded``'s pending payloads (:func:`gather`, kept in the
    landing zone) into records decoded like inline ones (same code); failures become rejects. Updates
    ``decoded``; the new rows, appended to ``decoded.changes``, go to ``sink`` too (the batch's changes
    file being encoded). Bodies are read one at a time (and their files closed)."""
    pending = decoded.pending
    decoded.pending = []
    by_coordinates = {(g.payload.sequence_number, g.payload.sub_sequence_number): g for g in gathered}
    if set(by_coordinates) != {(p.sequence_number, p.sub_sequence_number) for p in pending}:
        raise RuntimeError(
            f"shard {shard_id}: the gathered S3Url payloads are not the batch's pending ones; refusing to land it"
        )
    resolved: list[bytes] = []
    coordinates: list[tuple[str, int, int]] = []
    originals: dict[tuple[str, int], bytes] = {}
    for payload in pending:
        item = by_coordinates[(payload.sequence_number, payload.sub_sequence_number)]

        def quarantine(reason: str, detail: str, payload: PendingPayload = payload) -> None:
            decoded.rejects.append(
                Reject(
                    payload.sequence_number,
                    payload.sub_sequence_number,
                    payload.arrived_at_ms,
                    reason,
                    detail,
                    payload.raw,
                    payload.identity_pool_id,
                    payload.identity_id,
                    payload.dataset_name,
                )
            )

        if not item.result.ok:
            quarantine(item.result.reason or "s3url_unreachable", item.result.detail)
            continue
        body = item.result.read()
        records, problem = s3url.payload_records(body)
        del body
        if records is None:
            quarantine("s3url_bad_body", f"{problem} (body kept at {item.kept_url})")
            continue
        record, error = s3url.resolve(payload.raw, records)
        del records
        if record is None:
            reason = error.reason if error else "s3url_bad_body"
            detail = error.detail if error else "unreadable"
            quarantine(reason, f"in the S3Url payload kept at {item.kept_url}: {detail}")
            continue
        resolved.append(record)
        coordinates.append((payload.sequence_number, payload.sub_sequence_number, payload.arrived_at_ms))
        originals[(payload.sequence_number, payload.sub_sequence_number)] = payload.raw
    if not resolved:
        return
    sub = decode_records(
        KinesisRecords(
            data=resolved,
            sequence_numbers=[c[0] for c in coordinates],
            arrived_at_ms=[c[2] for c in coordinates],
            sub_sequence_numbers=[c[1] for c in coordinates],
        ),
        replace(options, resolved_s3url=True),
        sink=sink,
    )
    for reject in sub.rejects:
        # Keep the Kinesis record's own bytes (the rejects file must hold what Kinesis delivered).
        raw = originals.get((reject.sequence_number, reject.sub_sequence_number), reject.raw)
        decoded.rejects.append(replace(reject, raw=raw, detail=f"in the S3Url payload: {reject.detail}"))
    decoded.cut_values.extend(sub.cut_values)
    decoded.records_landed += sub.records_landed
    decoded.records_checked_slowly += sub.records_checked_slowly
    if sub.changes.num_rows:
        decoded.changes = pa.concat_tables([decoded.changes, sub.changes]) if decoded.changes.num_rows else sub.changes

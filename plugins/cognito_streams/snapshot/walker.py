"""The snapshot's work against Cognito: page the identities into chunks, walk a chunk, land its batches.

Paging (:func:`page_identities`) is sequential by nature (``ListIdentities`` pages with a token, at most
60 identities a page), so it only writes the chunks and the plan; the walk (:func:`walk_chunk`) is what
scales out, one mapped task per group of chunks. A chunk is walked ``snapshot_batch_identities``
identities at a time, ``snapshot_concurrency`` of them at once: the warehouse's view of those identities
is read (for the deletes a snapshot infers), each identity is read from Cognito Sync (``core.walk``), the
rows (``core.snapshot.identity_rows``) are landed as one batch of the landing contract (the landing's
own writer: data files first, descriptor last), then the chunk's progress moves. A kill loses at most
the batch in flight, which the retry reads again.

Throttling: the Cognito Sync client retries in botocore's ``adaptive`` mode (exponential back-off with
jitter, and a client-side rate that slows down on throttles); an identity still throttled after that is
retried here after a longer back-off, and the task fails only when even that keeps failing (Airflow's
retry then resumes from the cursor).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from cognito_streams.core.decode import CutValue, Decoded
from cognito_streams.core.landing_format import (
    LandingLayout,
    SnapshotLineage,
    snapshot_position,
    snapshot_shard,
)
from cognito_streams.core.snapshot import (
    MAX_CHUNK_IDENTITIES,
    Chunk,
    ChunkProgress,
    HeldDataset,
    IdentityRows,
    PoolPaging,
    Selection,
    SnapshotPlan,
    changes_table,
    chunk_name,
    identity_rows,
    progress_line,
    sample,
    work_units,
)
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.core.walk import IdentityRead, walk_identity
from cognito_streams.hooks.cognito_identity import CognitoIdentityHook
from cognito_streams.hooks.cognito_sync import CognitoSyncHook
from cognito_streams.landing_zone.snapshots import SnapshotStateError, SnapshotStore, snapshot_status
from cognito_streams.landing_zone.writer import BatchRange, BatchWriter
from cognito_streams.settings import PipelineSettings
from cognito_streams.warehouse.base import Warehouse

log = logging.getLogger(__name__)

#: Error codes of a throttled call (Cognito Sync answers TooManyRequestsException).
THROTTLED = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded"})
#: botocore's retry mode and attempts per call (first try included), then ours per identity.
RETRY_MODE = "adaptive"
CLIENT_ATTEMPTS = 8
IDENTITY_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
#: Identities per warehouse query (the IN list), as reconciliation reads them.
WAREHOUSE_CHUNK = 200
#: How often a walk task logs the whole snapshot's progress (read from every chunk's cursor).
SNAPSHOT_LOG_SECONDS = 60.0
#: How often a walk task loads the batches it landed (and once more at its end): the warehouse fills as
#: the walk goes, and no landed batch waits long enough to look like a stalled loader (the health page's
#: ``stall_alert_seconds``, 600 by default).
LOAD_EVERY_SECONDS = 120.0


@dataclass
class Counters:
    """Cognito Sync HTTP answers seen by this process's client (every attempt), and our own back-offs."""

    calls: int = 0
    throttled: int = 0
    backoffs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answered(self, status: int | None) -> None:
        with self._lock:
            self.calls += 1
            if status == 429:
                self.throttled += 1

    def backed_off(self) -> None:
        with self._lock:
            self.backoffs += 1


@dataclass
class SnapshotContext:
    """What the snapshot's tasks use: settings, the landing zone, the cursor, Cognito's clients."""

    settings: PipelineSettings
    s3: Any
    layout: LandingLayout
    store: SnapshotStore
    writer: BatchWriter
    sync: CognitoSyncHook
    identity: CognitoIdentityHook
    counters: Counters
    sleep: Callable[[float], None] = time.sleep
    open_warehouse: Callable[[], Any] | None = None
    #: Loads landed batches by descriptor URI (the loader's ``load_descriptors``); None: the walk does not load.
    load: Callable[[list[str]], Any] | None = None

    @classmethod
    def from_settings(cls, settings: PipelineSettings) -> SnapshotContext:
        """Clients from the ``aws_conn_id`` connection; Cognito Sync's retries in botocore's adaptive mode."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from cognito_streams.landing_zone.load import load_descriptors
        from cognito_streams.warehouse.connect import open_warehouse

        s3 = S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()
        layout = LandingLayout(settings.landing_bucket, settings.landing_prefix, settings.stream_name)
        config = Config(
            retries={"mode": RETRY_MODE, "max_attempts": CLIENT_ATTEMPTS},
            max_pool_connections=max(10, 2 * settings.snapshot_concurrency),
        )
        counters = Counters()
        # The client is made on first use (an export task never calls Cognito Sync).
        sync = CognitoSyncHook(aws_conn_id=settings.aws_conn_id, config=config, on_answer=counters.answered)
        return cls(
            settings=settings,
            s3=s3,
            layout=layout,
            store=SnapshotStore(s3, layout),
            writer=BatchWriter(s3, layout, settings.landing_compression),
            sync=sync,
            identity=CognitoIdentityHook(
                aws_conn_id=settings.aws_conn_id,
                config=Config(retries={"mode": RETRY_MODE, "max_attempts": CLIENT_ATTEMPTS}),
            ),
            counters=counters,
            open_warehouse=lambda: open_warehouse(settings),
            load=lambda urls: load_descriptors(settings, urls),
        )

    @contextmanager
    def warehouse(self) -> Iterator[Warehouse]:
        if self.open_warehouse is None:
            raise RuntimeError("this snapshot context has no warehouse")
        with self.open_warehouse() as wh:
            yield wh


# -- paging --------------------------------------------------------------------------------------------


def page_identities(
    ctx: SnapshotContext,
    snapshot_id: str,
    run_id: str,
    *,
    pool_ids: Sequence[str],
    selection: Selection,
    sample_size: int | None = None,
    identities: Sequence[str] = (),
    export: bool = False,
) -> SnapshotPlan:
    """Page the identities into chunks and write the plan (see the module docstring). A retry goes on
    from the plan: a pool paged to its end is not paged again, a pool paged part way resumes from its last
    written chunk (``ListIdentities``' token and the page's identities after the chunk's end)."""
    store, size = ctx.store, ctx.settings.snapshot_chunk_identities
    plan = store.plan(snapshot_id)
    if plan is not None and plan.paged:
        log.info(
            "snapshot %s: already paged (%d identities in %d chunks)", snapshot_id, plan.identities, len(plan.chunks)
        )
        return plan
    if plan is None or plan.identity_pool_ids != list(pool_ids) or plan.selection != selection:
        plan = SnapshotPlan(
            snapshot_id=snapshot_id,
            run_id=run_id,
            created_at=datetime.now(UTC),
            identity_pool_ids=list(pool_ids),
            selection=selection,
            sample_size=sample_size,
            chunk_identities=size,
            export=export,
            pools=[PoolPaging(identity_pool_id=p) for p in pool_ids],
        )
    started = time.monotonic()
    if selection == "list":
        plan.chunks, plan.identities = [], 0
        _write_chunks(ctx, plan, 0, 0, list(dict.fromkeys(identities)))
    elif selection == "sample":
        if sample_size is None:
            raise ValueError("a sample needs a size")
        pairs = ((p, i) for p in pool_ids for i in ctx.identity.list_identities(p))
        chosen = sample(pairs, sample_size, seed=snapshot_id)
        plan.chunks, plan.identities = [], 0
        for index, pool in enumerate(pool_ids):
            _write_chunks(ctx, plan, index, 0, [i for p, i in chosen if p == pool])
    else:
        for index in range(len(pool_ids)):
            _page_pool(ctx, plan, index, size)
    plan.paged, plan.paged_at = True, datetime.now(UTC)
    store.write_plan(plan)
    log.info(
        "snapshot %s: %d identities of %d pool(s) paged into %d chunk(s) of up to %d in %.1f s",
        snapshot_id,
        plan.identities,
        len(pool_ids),
        len(plan.chunks),
        size,
        time.monotonic() - started,
    )
    return plan


def _write_chunks(ctx: SnapshotContext, plan: SnapshotPlan, pool_index: int, first_chunk: int, ids: list[str]) -> None:
    size = plan.chunk_identities
    pool = plan.identity_pool_ids[pool_index]
    for n, start in enumerate(range(0, len(ids), size), start=first_chunk):
        chunk = Chunk(
            snapshot_id=plan.snapshot_id,
            name=chunk_name(pool_index, n),
            pool_index=pool_index,
            chunk_index=n,
            identity_pool_id=pool,
            identities=ids[start : start + size],
        )
        ctx.store.write_chunk(chunk)
        plan.chunks.append(chunk.name)
        plan.identities += len(chunk.identities)
    paging = plan.pools[pool_index]
    paging.done, paging.identities = True, len(ids)


def _page_pool(ctx: SnapshotContext, plan: SnapshotPlan, pool_index: int, size: int) -> None:
    """Page one pool's identities into chunks of ``size``, writing the plan after each chunk."""
    paging = plan.pools[pool_index]
    if paging.done:
        return
    pool = paging.identity_pool_id
    buffer: list[str] = list(paging.carry)
    token = paging.next_token
    if paging.chunks == 0 and token is None and not buffer:
        log.info("pool %s: paging its identities (ListIdentities, 60 a page)", pool)
    else:
        log.info("pool %s: resuming paging after %d chunk(s) (%d identities)", pool, paging.chunks, paging.identities)
    last_log = time.monotonic()
    while True:
        try:
            ids, next_token = ctx.identity.identities_page(pool, token)
        except ClientError as err:
            if token is None or ctx.sync.error_code(err) != "InvalidParameterException":
                raise
            # The saved token is no longer accepted: page the pool again from its start (the chunks are
            # written again under the same names; nothing was walked yet).
            log.warning("pool %s: ListIdentities refused the saved NextToken (%s); paging it again", pool, err)
            plan.chunks = [c for c in plan.chunks if not c.startswith(f"{pool_index:03d}-")]
            plan.identities -= paging.identities
            paging.chunks = paging.identities = 0
            paging.carry, token, buffer = [], None, []
            continue
        buffer += ids
        while len(buffer) >= size or (next_token is None and buffer):
            chunk = Chunk(
                snapshot_id=plan.snapshot_id,
                name=chunk_name(pool_index, paging.chunks),
                pool_index=pool_index,
                chunk_index=paging.chunks,
                identity_pool_id=pool,
                identities=buffer[:size],
            )
            ctx.store.write_chunk(chunk)
            buffer = buffer[size:]
            plan.chunks.append(chunk.name)
            plan.identities += len(chunk.identities)
            paging.chunks += 1
            paging.identities += len(chunk.identities)
            # The cursor: the next page's token and this page's identities after the chunk's end.
            paging.next_token, paging.carry = next_token, list(buffer)
            ctx.store.write_plan(plan)
        token = next_token
        if time.monotonic() - last_log > SNAPSHOT_LOG_SECONDS:
            log.info("pool %s: %d identities paged into %d chunk(s) so far", pool, paging.identities, paging.chunks)
            last_log = time.monotonic()
        if token is None:
            paging.done = True
            paging.next_token, paging.carry = None, []
            return


def plan_units(plan: SnapshotPlan, max_units: int) -> list[dict[str, Any]]:
    """The walk's mapped work: the chunks in at most ``max_units`` groups."""
    return [{"snapshot_id": plan.snapshot_id, "chunks": unit} for unit in work_units(plan.chunks, max_units)]


# -- walking ---------------------------------------------------------------------------------------------


def held_datasets(wh: Warehouse, pool_id: str, identity_ids: Sequence[str]) -> dict[str, dict[str, HeldDataset]]:
    """What the warehouse holds of these identities' datasets, by identity and dataset name."""
    sql = ReportingSql(wh.schema, wh.engine)
    out: dict[str, dict[str, HeldDataset]] = {i: {} for i in identity_ids}
    for start in range(0, len(identity_ids), WAREHOUSE_CHUNK):
        part = list(identity_ids[start : start + WAREHOUSE_CHUNK])
        with wh.transaction() as cur:
            cur.execute(sql.held_datasets_of_identities(len(part)), (pool_id, *part, pool_id, *part))
            rows = cur.fetchall()
        for identity, name, deleted, deleted_at, last_sync, modified, generation, oldest in rows:
            out[str(identity)][str(name)] = HeldDataset(
                str(name),
                bool(deleted),
                _utc(deleted_at),
                None if last_sync is None else int(last_sync),
                _utc(modified) or datetime.min.replace(tzinfo=UTC),
                None if generation is None else int(generation),
                _utc(oldest),
            )
    return out


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def walk_one(
    ctx: SnapshotContext, pool_id: str, identity_id: str, held: Mapping[str, HeldDataset]
) -> tuple[IdentityRead, datetime]:
    """One identity through ``core.walk``, backing off when Cognito Sync keeps throttling; with the moment
    its (last) walk began."""
    expected = [name for name, h in held.items() if h.holds_live]
    for attempt in range(IDENTITY_ATTEMPTS):
        started = datetime.now(UTC)
        try:
            return walk_identity(ctx.sync, pool_id, identity_id, expected=expected), started
        except ClientError as err:
            if ctx.sync.error_code(err) not in THROTTLED or attempt == IDENTITY_ATTEMPTS - 1:
                raise
            delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            ctx.counters.backed_off()
            log.warning(
                "identity %s: Cognito Sync still throttles after the client's retries; backing off %.1f s (%d/%d)",
                identity_id,
                delay,
                attempt + 1,
                IDENTITY_ATTEMPTS - 1,
            )
            ctx.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class LandedRows:
    """One landed batch (or none, when its identities had nothing)."""

    descriptor_url: str | None
    rows: IdentityRows


def land_batch(
    ctx: SnapshotContext,
    chunk: Chunk,
    first: int,
    reads: Sequence[tuple[IdentityRead, datetime]],
    held: Mapping[str, Mapping[str, HeldDataset]],
) -> LandedRows:
    """The rows of ``reads`` (positions ``first``.. of ``chunk``) landed as one snapshot batch."""
    total = IdentityRows()
    changes = []
    arrived: list[datetime] = []
    for offset, (read, started) in enumerate(reads):
        rows = identity_rows(
            read,
            held.get(read.identity_id, {}),
            position=snapshot_position(chunk.pool_index, chunk.chunk_index, first + offset),
            started_at=started,
        )
        changes += rows.changes
        total.datasets_read += rows.datasets_read
        total.records_read += rows.records_read
        for why, n in rows.deletes.items():
            total.deletes[why] = total.deletes.get(why, 0) + n
        arrived.append(read.listed_at or started)
    if not changes:
        return LandedRows(None, total)
    shard = snapshot_shard(chunk.snapshot_id)
    last = first + len(reads) - 1
    span = BatchRange(
        shard_id=shard,
        first_sequence_number=snapshot_position(chunk.pool_index, chunk.chunk_index, first),
        last_sequence_number=snapshot_position(chunk.pool_index, chunk.chunk_index, last),
        first_arrived_at=min(arrived),
        last_arrived_at=max(arrived),
    )
    descriptor_key = ctx.layout.batch_key(
        shard, span.first_sequence_number, span.last_sequence_number, span.first_arrived_at
    )
    if _exists(ctx, descriptor_key):
        # Landed whole by a try that died before moving the cursor: keep that batch (it may be loaded already);
        # this try's reads, as true as those, are dropped (only the counts in the cursor come from them).
        log.info("batch %s was landed by an earlier try; keeping it", ctx.layout.url(descriptor_key))
        return LandedRows(ctx.layout.url(descriptor_key), total)
    table, full = changes_table(
        changes,
        stream_name=ctx.layout.stream_name,
        shard_id=shard,
        landed_file=ctx.writer.changes_url(span),
        value_max_bytes=ctx.settings.value_max_bytes,
        value_ref=ctx.writer.value_url(shard),
    )
    deletes = sum(total.deletes.values())
    syncs = total.datasets_read + deletes  # one "sync record" per dataset read or delete inferred
    decoded = Decoded(
        changes=table, cut_values=[CutValue(f.ref, f.text) for f in full], records_read=syncs, records_landed=syncs
    )
    lineage = SnapshotLineage(
        snapshot_id=chunk.snapshot_id,
        identity_pool_id=chunk.identity_pool_id,
        chunk=chunk.name,
        first_identity=first,
        last_identity=last,
        identities=len(reads),
        datasets_read=total.datasets_read,
        dataset_deletes=deletes,
    )
    _, url = ctx.writer.write(span, decoded, syncs, syncs, snapshot=lineage)
    return LandedRows(url, total)


def _exists(ctx: SnapshotContext, key: str) -> bool:
    try:
        ctx.s3.head_object(Bucket=ctx.layout.bucket, Key=key)
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


class BatchLoader:
    """Loads the batches a walk task lands, at most every ``every`` seconds and when flushed."""

    def __init__(self, load: Callable[[list[str]], Any] | None, every: float = LOAD_EVERY_SECONDS) -> None:
        self._load = load
        self._every = every
        self._pending: list[str] = []
        self._last = time.monotonic()
        self.loaded = 0

    def landed(self, url: str) -> None:
        """A batch was landed; load what is pending when the last load is ``every`` seconds old."""
        self._pending.append(url)
        if time.monotonic() - self._last >= self._every:
            self.flush()

    def flush(self) -> None:
        """Load every pending batch now."""
        if self._pending and self._load is not None:
            report = self._load(list(self._pending))
            self.loaded += int(getattr(report, "batches", 0))
        self._pending = []
        self._last = time.monotonic()


@dataclass
class WalkOutcome:
    """What one walk task did (its return value)."""

    chunks: list[str] = field(default_factory=list)
    identities: int = 0
    walked_now: int = 0
    datasets_read: int = 0
    records_read: int = 0
    dataset_deletes: int = 0
    unknown_identities: int = 0
    batches: int = 0
    batches_loaded: int = 0
    calls: int = 0
    throttled: int = 0
    backoffs: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        out["identities_per_second"] = round(self.walked_now / self.seconds, 2) if self.seconds else 0.0
        out["seconds"] = round(self.seconds, 2)
        return out


def walk_chunks(ctx: SnapshotContext, snapshot_id: str, chunk_names: Sequence[str]) -> WalkOutcome:
    """Walk these chunks one after the other (one mapped task's work), each from its cursor."""
    outcome = WalkOutcome(chunks=list(chunk_names))
    plan = ctx.store.plan(snapshot_id)
    if plan is None or not plan.paged:
        raise SnapshotStateError(
            f"snapshot {snapshot_id} has no finished plan (snapshots/{snapshot_id}/plan.json): page_identities "
            "writes it before the walk; clear page_identities and rerun"
        )
    chunks = [ctx.store.chunk(snapshot_id, name) for name in chunk_names]
    total = sum(len(c.identities) for c in chunks)
    outcome.identities = total
    started = time.monotonic()
    calls0, throttled0, backoffs0 = ctx.counters.calls, ctx.counters.throttled, ctx.counters.backoffs
    done = 0
    last_snapshot_log = time.monotonic()
    loader = BatchLoader(ctx.load)
    with ctx.warehouse() as wh, ThreadPoolExecutor(ctx.settings.snapshot_concurrency, "snapshot-walk") as pool:
        for chunk in chunks:
            done += walk_chunk(ctx, wh, pool, chunk, outcome, loader).done
            if time.monotonic() - last_snapshot_log > SNAPSHOT_LOG_SECONDS or chunk is chunks[-1]:
                # The whole snapshot, from every chunk's cursor (what the health page shows).
                status = snapshot_status(ctx.store, snapshot_id)
                since = (datetime.now(UTC) - plan.created_at).total_seconds()
                log.info(
                    "%s; this task: %s",
                    progress_line(
                        f"snapshot {snapshot_id}", int(status.get("identities_done") or 0), plan.identities, since
                    ),
                    progress_line("its chunks", done, total, time.monotonic() - started),
                )
                last_snapshot_log = time.monotonic()
    loader.flush()
    outcome.batches_loaded = loader.loaded
    outcome.seconds = time.monotonic() - started
    outcome.calls = ctx.counters.calls - calls0
    outcome.throttled = ctx.counters.throttled - throttled0
    outcome.backoffs = ctx.counters.backoffs - backoffs0
    return outcome


def walk_chunk(
    ctx: SnapshotContext,
    wh: Warehouse,
    pool: ThreadPoolExecutor,
    chunk: Chunk,
    outcome: WalkOutcome,
    loader: BatchLoader | None = None,
) -> ChunkProgress:
    """Walk one chunk from its cursor to its end, a batch of identities at a time."""
    if len(chunk.identities) > MAX_CHUNK_IDENTITIES:
        raise SnapshotStateError(
            f"chunk {chunk.name} holds {len(chunk.identities)} identities (at most {MAX_CHUNK_IDENTITIES})"
        )
    progress, etag = ctx.store.progress(chunk.snapshot_id, chunk.name)
    if progress is not None and progress.digest != chunk.digest:
        log.warning("chunk %s was paged again since its progress was written: walking it from its start", chunk.name)
        progress = None
    if progress is None:
        progress = ChunkProgress(
            snapshot_id=chunk.snapshot_id,
            chunk=chunk.name,
            digest=chunk.digest,
            identities=len(chunk.identities),
            started_at=datetime.now(UTC),
        )
    elif progress.done:
        log.info(
            "chunk %s: resuming after %d of %d identities (the cursor)", chunk.name, progress.done, progress.identities
        )
    batch = ctx.settings.snapshot_batch_identities
    while not progress.finished:
        t0 = time.monotonic()
        calls0, throttled0 = ctx.counters.calls, ctx.counters.throttled
        first = progress.done
        ids = chunk.identities[first : first + batch]
        held = held_datasets(wh, chunk.identity_pool_id, ids)
        reads = list(pool.map(lambda i, h=held: walk_one(ctx, chunk.identity_pool_id, i, h[i]), ids))
        landed = land_batch(ctx, chunk, first, reads, held)
        rows = landed.rows
        progress = progress.model_copy(
            update={
                "done": first + len(ids),
                "datasets_read": progress.datasets_read + rows.datasets_read,
                "records_read": progress.records_read + rows.records_read,
                "dataset_deletes": progress.dataset_deletes + sum(rows.deletes.values()),
                "unknown_identities": progress.unknown_identities + sum(1 for r, _ in reads if r.unknown),
                "batches": progress.batches + ([landed.descriptor_url] if landed.descriptor_url else []),
                "calls": progress.calls + ctx.counters.calls - calls0,
                "throttled": progress.throttled + ctx.counters.throttled - throttled0,
                "walk_seconds": progress.walk_seconds + time.monotonic() - t0,
                "updated_at": datetime.now(UTC),
            }
        )
        etag = ctx.store.write_progress(progress, etag)
        if loader is not None and landed.descriptor_url is not None:
            loader.landed(landed.descriptor_url)
        outcome.walked_now += len(ids)
        outcome.datasets_read += rows.datasets_read
        outcome.records_read += rows.records_read
        outcome.dataset_deletes += sum(rows.deletes.values())
        outcome.unknown_identities += sum(1 for r, _ in reads if r.unknown)
        outcome.batches += int(landed.descriptor_url is not None)
        log.info(
            "%s; %d datasets, %d records, %d dataset deletes inferred %s, %d calls (%d throttled)",
            progress_line(f"chunk {chunk.name}", progress.done, progress.identities, progress.walk_seconds),
            rows.datasets_read,
            rows.records_read,
            sum(rows.deletes.values()),
            rows.deletes or "",
            ctx.counters.calls - calls0,
            ctx.counters.throttled - throttled0,
        )
    return progress

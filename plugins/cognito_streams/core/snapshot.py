"""The snapshot's rules (pure): its durable cursor, the rows a walked identity becomes, and progress.

``cognito_snapshot`` reads Cognito Sync directly (``core.walk``) and lands what it reads as batches of the
landing contract (``core.landing_format``, payload type ``snapshot``), so that the loader merges them
under the same rules as the stream's changes. What each row means is written in docs/semantics.md,
"Snapshots"; in short:

- every record ``ListRecords`` returns is one version, exactly as the stream carries it (its
  ``SyncCount`` and ``LastModifiedDate``; a record without ``Value`` is a ``remove``), so a snapshot
  row and the stream's copy of the same change are one version in ``record_changes``;
- a dataset the warehouse holds live that Cognito Sync no longer has becomes a ``dataset_remove`` at the
  moment Cognito Sync said so (:func:`absent_delete_time`); a dataset Cognito Sync has re-created since
  the warehouse's rows were written (its ``CreationDate`` after them, or its sync count restarted)
  becomes a ``dataset_remove`` just before its new generation (:func:`recreation_delete_time`).

The cursor lives in S3 under ``snapshots/<snapshot id>/`` (``LandingLayout.snapshot_key``): the plan,
the chunks of identities the first task paged from ``ListIdentities``, and one progress object per
chunk, moved after each landed batch. A killed or retried walk goes on from there.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from cognito_streams.core.landing_format import (
    CHANGES_SCHEMA,
    OP_DATASET_REMOVE,
    OP_REMOVE,
    OP_REPLACE,
    PAYLOAD_SNAPSHOT,
)
from cognito_streams.core.values import stored_key, stored_value
from cognito_streams.core.walk import DatasetRead, IdentityRead

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
#: How identities are chosen: every identity, a list, or a deterministic sample of this many.
Selection = Literal["all", "list", "sample"]
#: The identities of a chunk are positions 0..MAX_CHUNK_IDENTITIES-1 in its rows' sequence numbers.
MAX_CHUNK_IDENTITIES = 100_000
#: Cognito Sync's ``Date`` header has whole seconds: the moment it checked can be up to this much earlier.
DATE_PRECISION = timedelta(seconds=1)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch, rounded down (Cognito's dates are milliseconds; a naive value is UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // MS


def from_ms(value: int) -> datetime:
    """The UTC datetime of epoch milliseconds."""
    return EPOCH + value * MS


def snapshot_id_for(run_id: str) -> str:
    """The snapshot id of a DAG run: readable, safe in S3 keys, shard ids and COPY statements, and the same
    for every try of the run (so a retry finds its cursor)."""
    readable = _UNSAFE.sub("-", run_id).strip("-.")[:60] or "run"
    return f"{readable}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


# -- the cursor ------------------------------------------------------------------------------------


class Chunk(BaseModel):
    """A chunk of identities of one pool, in ``ListIdentities``' order: the unit a walk task resumes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_id: str
    name: str  # <pool index:03>-<chunk index:06>
    pool_index: int = Field(ge=0, lt=1000)
    chunk_index: int = Field(ge=0)
    identity_pool_id: str
    identities: list[str] = Field(max_length=MAX_CHUNK_IDENTITIES)

    @property
    def digest(self) -> str:
        """What a progress object was counted against (a chunk paged again may hold other identities)."""
        return hashlib.sha256("\n".join(self.identities).encode()).hexdigest()[:16]


def chunk_name(pool_index: int, chunk_index: int) -> str:
    """``<pool index>-<chunk index>``, zero-padded so that names sort in walk order."""
    return f"{pool_index:03d}-{chunk_index:06d}"


class PoolPaging(BaseModel):
    """How far the first task has paged one pool's identities into chunks."""

    model_config = ConfigDict(extra="forbid")

    identity_pool_id: str
    next_token: str | None = None
    #: Identities of the last page read after the end of the last chunk written (they start the next one).
    carry: list[str] = Field(default_factory=list)
    chunks: int = 0
    identities: int = 0
    done: bool = False


class SnapshotPlan(BaseModel):
    """``snapshots/<id>/plan.json``: what the snapshot walks. Written while paging (``paged`` False) and
    once more when every chunk is written."""

    model_config = ConfigDict(extra="forbid")

    snapshot_id: str
    run_id: str
    created_at: datetime
    identity_pool_ids: list[str]
    selection: Selection
    sample_size: int | None = None
    chunk_identities: int = Field(ge=1, le=MAX_CHUNK_IDENTITIES)
    export: bool = False
    pools: list[PoolPaging] = Field(default_factory=list)
    chunks: list[str] = Field(default_factory=list)
    identities: int = 0
    paged: bool = False
    paged_at: datetime | None = None


class ChunkProgress(BaseModel):
    """``snapshots/<id>/progress/<chunk>.json``: the walk's durable cursor in one chunk, moved (by
    compare-and-swap) after each landed batch. ``done`` identities are walked and landed."""

    model_config = ConfigDict(extra="forbid")

    snapshot_id: str
    chunk: str
    digest: str
    identities: int = Field(ge=0)
    done: int = Field(ge=0, default=0)
    datasets_read: int = 0
    records_read: int = 0
    dataset_deletes: int = 0
    unknown_identities: int = 0
    batches: list[str] = Field(default_factory=list)  # descriptor URIs
    calls: int = 0
    throttled: int = 0
    walk_seconds: float = 0.0
    started_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.done >= self.identities


def work_units(chunks: Sequence[str], max_units: int) -> list[list[str]]:
    """The chunks in at most ``max_units`` consecutive groups of near-equal size (one mapped walk task each:
    Airflow caps the tasks a mapping may create at ``[core] max_map_length``)."""
    if max_units < 1:
        raise ValueError(f"max_units must be at least 1, got {max_units}")
    n = len(chunks)
    units = min(n, max_units)
    out: list[list[str]] = []
    start = 0
    for i in range(units):
        size = n // units + (1 if i < n % units else 0)
        out.append(list(chunks[start : start + size]))
        start += size
    return out


def _rank(seed: str, pool_id: str, identity_id: str) -> str:
    return hashlib.sha256(f"{seed}|{pool_id}|{identity_id}".encode()).hexdigest()


def sample(pairs: Iterable[tuple[str, str]], size: int, seed: str) -> list[tuple[str, str]]:
    """A deterministic sample of ``size`` (pool, identity) pairs, in memory of ``size`` only (the pairs may
    be millions, streamed from ``ListIdentities``): the same pairs as ``core.reconcile.sample_identities``
    picks from the same (distinct) pairs and seed, sorted."""
    chosen = heapq.nsmallest(size, set(pairs), key=lambda pi: _rank(seed, pi[0], pi[1]))
    return sorted(chosen)


# -- what the walk makes of an identity --------------------------------------------------------------


@dataclass(frozen=True)
class HeldDataset:
    """What the warehouse holds of one dataset when the walk reads its identity (``datasets`` and the
    oldest live row of ``records``), to infer the deletes Cognito Sync does not list."""

    dataset_name: str
    is_deleted: bool
    deleted_at: datetime | None
    last_sync_count: int | None
    last_modified_at: datetime
    #: The largest sync count among the versions after ``deleted_at`` (None: no version since).
    generation_sync_count: int | None = None
    #: The oldest ``last_modified_at`` among its live keys (None: no live key).
    oldest_live_at: datetime | None = None

    @property
    def holds_live(self) -> bool:
        """The warehouse shows something of it as live: the dataset, or a key."""
        return not self.is_deleted or self.oldest_live_at is not None


@dataclass(frozen=True)
class SnapshotChange:
    """One row of a snapshot batch's changes file (``CHANGES_SCHEMA`` but for the file-level columns);
    times are epoch milliseconds."""

    identity_pool_id: str
    identity_id: str
    dataset_name: str
    record_key: str | None
    op: str
    value: str | None  # the whole value (cut when written, see ``stored``)
    sync_count: int
    last_modified_ms: int
    device_last_modified_ms: int | None
    event_sync_count: int | None
    event_last_modified_ms: int | None
    sequence_number: str
    sub_sequence_number: int
    record_index: int
    arrived_ms: int


@dataclass
class IdentityRows:
    """The rows of one walked identity and what was inferred."""

    changes: list[SnapshotChange] = field(default_factory=list)
    datasets_read: int = 0
    records_read: int = 0
    #: Inferred ``dataset_remove`` rows, by why: ``absent``, ``vanished``, ``unknown_identity``, ``recreated``.
    deletes: dict[str, int] = field(default_factory=dict)


def absent_delete_time(answered_at: datetime | None, held: HeldDataset, fallback: datetime) -> datetime:
    """When a dataset the warehouse holds live was deleted, as far as the snapshot can say: a moment at or
    before Cognito Sync checked that it does not exist.

    The answer's ``Date`` has whole seconds, so the check was at most a second before it: ``Date`` less a
    second is such a moment. No key of the dataset written at or before it can be live (the dataset did
    not exist after it), and a re-creation after the check is newer (a new generation). The warehouse's
    latest change of the dataset was made before the walk asked (the warehouse is read first), so the
    delete is placed no earlier than it either, which covers a change made in the last second. A latest
    change after the answer can only come from a clock that disagrees, and is not trusted. ``fallback`` (the
    worker's clock before the call, less a second) stands in when the answer carried no ``Date``."""
    if answered_at is None:
        return fallback
    moment = answered_at - DATE_PRECISION
    if held.last_modified_at < answered_at + DATE_PRECISION:
        moment = max(moment, held.last_modified_at)
    return moment


def recreation_delete_time(dataset: DatasetRead) -> datetime | None:
    """Just before the current generation of a listed dataset: one millisecond before its oldest listed
    record, or before its ``CreationDate`` when no record is listed. None when neither is known.

    Cognito Sync deletes every record with its dataset, and ``ListRecords`` from sync count 0 lists every
    record the dataset has (removed keys included) at its current version, so no key live in Cognito has
    an older change: a delete at this moment never deletes anything Cognito Sync holds, and deletes every
    older generation (whose real delete came before all of these records)."""
    times = [epoch_ms(r["LastModifiedDate"]) for r in dataset.records or () if r.get("LastModifiedDate")]
    created = dataset.description.get("CreationDate")
    if not times and isinstance(created, datetime):
        times.append(epoch_ms(created))
    if not times:
        return None
    return from_ms(min(times) - 1)


def recreated(dataset: DatasetRead, held: HeldDataset | None, delete_at: datetime | None) -> bool:
    """Whether the warehouse holds something of the dataset older than its current generation in Cognito:
    a live key changed before it began, or a current generation whose sync count is above Cognito's (sync
    counts restart when a dataset is re-created; in one generation every stored version is at most the
    dataset's count). The delete is then inferred (it is safe anyway: :func:`recreation_delete_time`)."""
    if held is None or delete_at is None:
        return False
    if held.deleted_at is not None and held.deleted_at >= delete_at:
        return False  # the warehouse already knows a delete that late
    if held.oldest_live_at is not None and held.oldest_live_at <= delete_at:
        return True
    count = dataset.dataset_sync_count
    return held.generation_sync_count is not None and count is not None and held.generation_sync_count > count


def identity_rows(
    read: IdentityRead,
    held: Mapping[str, HeldDataset],
    *,
    position: str,
    started_at: datetime,
) -> IdentityRows:
    """The snapshot rows of one walked identity (see the module docstring and docs/semantics.md).

    ``held``: the warehouse's datasets of the identity; ``position``: its snapshot position (the rows'
    sequence number); ``started_at``: the worker's clock when the walk of the identity began (stands in
    for answers that carried no ``Date``)."""
    out = IdentityRows()
    pool, identity = read.identity_pool_id, read.identity_id
    fallback = started_at - DATE_PRECISION
    read_ms = epoch_ms(read.listed_at or started_at)

    def delete(name: str, at: datetime, why: str, index: int) -> None:
        # The delete's sync count is not known: the last one the warehouse counted stands in for it.
        h = held.get(name)
        count = (h.last_sync_count or 0) if h is not None else 0
        out.changes.append(
            SnapshotChange(
                pool, identity, name, None, OP_DATASET_REMOVE, None, count,
                epoch_ms(at), None, None, None, position, index, 0, read_ms,
            )
        )  # fmt: skip
        out.deletes[why] = out.deletes.get(why, 0) + 1

    gone: list[tuple[str, datetime | None, str]] = []
    if read.unknown:
        gone += [(name, read.listed_at, "unknown_identity") for name in sorted(held)]
    gone += [(name, at, "absent") for name, at in sorted(read.absent.items())]
    gone += [(d.name, d.vanished_at, "vanished") for d in read.datasets if d.vanished]
    index = len(read.datasets)
    for name, at, why in gone:
        h = held.get(name)
        if h is not None and h.holds_live:
            delete(name, absent_delete_time(at, h, fallback), why, index)
            index += 1

    for sub, dataset in enumerate(read.datasets):
        if dataset.vanished or dataset.records is None:
            continue
        out.datasets_read += 1
        at = recreation_delete_time(dataset)
        if recreated(dataset, held.get(dataset.name), at):
            assert at is not None  # noqa: S101 - recreated() is False without a time
            delete(dataset.name, at, "recreated", index)
            index += 1
        modified = dataset.description.get("LastModifiedDate")
        event_ms = epoch_ms(modified) if isinstance(modified, datetime) else None
        arrived = epoch_ms(dataset.records_read_at) if dataset.records_read_at else read_ms
        for i, r in enumerate(dataset.records):
            value = r.get("Value")
            device = r.get("DeviceLastModifiedDate")
            out.changes.append(
                SnapshotChange(
                    pool, identity, dataset.name, str(r["Key"]), OP_REMOVE if value is None else OP_REPLACE,
                    None if value is None else str(value), int(r["SyncCount"]), epoch_ms(r["LastModifiedDate"]),
                    epoch_ms(device) if isinstance(device, datetime) else None, dataset.dataset_sync_count,
                    event_ms, position, sub, i, arrived,
                )
            )  # fmt: skip
            out.records_read += 1
    return out


@dataclass(frozen=True)
class FullValue:
    """The exact text of a value the changes file holds cut or escaped, and the s3 URI it must be kept at."""

    ref: str
    text: bytes


def changes_table(
    changes: Sequence[SnapshotChange],
    *,
    stream_name: str,
    shard_id: str,
    landed_file: str,
    value_max_bytes: int,
    value_ref: Callable[[str, int, int], str],
) -> tuple[pa.Table, list[FullValue]]:
    """The changes file's table (``CHANGES_SCHEMA``) of a snapshot batch, and the exact texts of the values
    it holds cut or escaped (keys holding U+0000 are stored escaped too).
    ``value_ref(sequence_number, sub_sequence_number, record_index)``: where a flagged value's exact text
    is kept (the landing zone's ``values/`` folder, as for the stream's)."""
    values: list[str | None] = []
    sizes: list[int | None] = []
    cut: list[bool] = []
    refs: list[str | None] = []
    full: list[FullValue] = []
    for c in changes:
        if c.value is None:
            values.append(None)
            sizes.append(None)
            cut.append(False)
            refs.append(None)
            continue
        # As the stream's values are stored: cut when too long, escaped when holding U+0000; either way
        # flagged, with the exact bytes kept at value_ref (core/values.py, docs/semantics.md).
        kept = stored_value(c.value, value_max_bytes)
        values.append(kept.text)
        sizes.append(kept.value_bytes)
        cut.append(kept.flagged)
        if kept.flagged:
            ref = value_ref(c.sequence_number, c.sub_sequence_number, c.record_index)
            refs.append(ref)
            full.append(FullValue(ref, c.value.encode("utf-8")))
        else:
            refs.append(None)
    n = len(changes)

    def times(ms: list[int | None], name: str) -> pa.Array:
        return pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(CHANGES_SCHEMA.field(name).type)

    table = pa.table(
        {
            "identity_pool_id": [c.identity_pool_id for c in changes],
            "identity_id": [c.identity_id for c in changes],
            "dataset_name": [c.dataset_name for c in changes],
            "record_key": [None if c.record_key is None else stored_key(c.record_key) for c in changes],
            "op": [c.op for c in changes],
            "record_value": values,
            "value_bytes": sizes,
            "is_value_cut": cut,
            "value_ref": refs,
            "sync_count": [c.sync_count for c in changes],
            "last_modified_at": times([c.last_modified_ms for c in changes], "last_modified_at"),
            "device_last_modified_at": times([c.device_last_modified_ms for c in changes], "device_last_modified_at"),
            "event_sync_count": [c.event_sync_count for c in changes],
            "event_last_modified_at": times([c.event_last_modified_ms for c in changes], "event_last_modified_at"),
            "payload_type": [PAYLOAD_SNAPSHOT] * n,
            "stream_name": [stream_name] * n,
            "shard_id": [shard_id] * n,
            "sequence_number": [c.sequence_number for c in changes],
            "sub_sequence_number": [c.sub_sequence_number for c in changes],
            "record_index": [c.record_index for c in changes],
            "arrived_at": times([c.arrived_ms for c in changes], "arrived_at"),
            "landed_file": [landed_file] * n,
        },
        schema=CHANGES_SCHEMA,
    )
    return table, full


# -- progress ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """Identities per second and the time left at that rate."""

    per_second: float
    eta_seconds: float | None


def rate(done: int, total: int, seconds: float) -> Rate:
    """The rate of ``done`` identities in ``seconds`` and the time left for the rest at that rate."""
    if seconds <= 0 or done <= 0:
        return Rate(0.0, None)
    per_second = done / seconds
    return Rate(per_second, max(0, total - done) / per_second)


def progress_line(what: str, done: int, total: int, seconds: float) -> str:
    """``<what>: 1,200 / 2,000 identities (60.0 %), 45.2 identities/s, ETA 18 s`` for the task log."""
    r = rate(done, total, seconds)
    share = 100.0 * done / total if total else 100.0
    eta = "-" if r.eta_seconds is None else _duration(r.eta_seconds)
    return f"{what}: {done:,} / {total:,} identities ({share:.1f} %), {r.per_second:,.1f} identities/s, ETA {eta}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def summarize(
    progress: Iterable[ChunkProgress], total: int, started_at: datetime | None, now: datetime
) -> dict[str, Any]:
    """The whole snapshot's progress from its chunks' progress objects (what the health page shows)."""
    items = list(progress)
    done = sum(p.done for p in items)
    elapsed = (now - started_at).total_seconds() if started_at else 0.0
    r = rate(done, total, elapsed)
    return {
        "identities": total,
        "identities_done": done,
        "chunks_started": len(items),
        "chunks_finished": sum(1 for p in items if p.finished),
        "datasets_read": sum(p.datasets_read for p in items),
        "records_read": sum(p.records_read for p in items),
        "dataset_deletes": sum(p.dataset_deletes for p in items),
        "unknown_identities": sum(p.unknown_identities for p in items),
        "batches": sum(len(p.batches) for p in items),
        "throttled": sum(p.throttled for p in items),
        "identities_per_second": round(r.per_second, 2),
        "eta_seconds": None if r.eta_seconds is None else round(r.eta_seconds),
        "finished": total > 0 and done >= total,
    }


# -- the export ---------------------------------------------------------------------------------------

#: DynamoDB's item limit (names and values, UTF-8 bytes) and its key limits.
ITEM_MAX_BYTES = 400 * 1024
SORT_KEY_MAX_BYTES = 1024
#: A value whose item would pass this goes to S3 and the item points at it (a margin under the limit for
#: DynamoDB's own per-item overhead).
ITEM_VALUE_BUDGET = ITEM_MAX_BYTES - 1024
PK, SK = "pk", "sk"

#: The export's Parquet file: one row per live key, values whole, with its dataset's metadata.
EXPORT_SCHEMA = pa.schema(
    [
        pa.field("identity_pool_id", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("dataset_name", pa.string(), nullable=False),
        pa.field("record_key", pa.string(), nullable=False),
        pa.field("record_value", pa.string(), nullable=False),  # whole (a cut value read back from value_ref)
        pa.field("value_bytes", pa.int64(), nullable=False),
        pa.field("sync_count", pa.int64(), nullable=False),
        pa.field("last_modified_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("device_last_modified_at", pa.timestamp("ms", tz="UTC")),
        pa.field("dataset_sync_count", pa.int64()),
        pa.field("dataset_last_modified_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("dataset_live_record_count", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class ExportRow:
    """One live key of the warehouse, its value whole."""

    identity_pool_id: str
    identity_id: str
    dataset_name: str
    record_key: str
    value: str
    sync_count: int
    last_modified_at: datetime
    device_last_modified_at: datetime | None
    dataset_sync_count: int | None
    dataset_last_modified_at: datetime
    dataset_live_record_count: int
    #: Where the landing zone keeps the value's whole text (a value the warehouse holds cut), if anywhere.
    value_ref: str | None = None


def partition_key(identity_id: str, dataset_name: str) -> str:
    """The DynamoDB partition key of a dataset: ``<identity id>#<dataset name>`` (neither holds ``#``)."""
    return f"{identity_id}#{dataset_name}"


def sort_key(record_key: str) -> str:
    """The DynamoDB sort key of a record: the key itself, or, when longer than DynamoDB's 1,024-byte sort
    key (a Cognito key may take up to 4,096 UTF-8 bytes), ``~sha256:<hex>`` of it (the item's
    ``record_key`` attribute holds the key whole)."""
    data = record_key.encode("utf-8", "surrogatepass")
    if len(data) <= SORT_KEY_MAX_BYTES and not record_key.startswith("~sha256:"):
        return record_key
    return f"~sha256:{hashlib.sha256(data).hexdigest()}"


def iso_ms(value: datetime) -> str:
    """``2026-11-27T10:11:12.123Z`` (AppSync's AWSDateTime, millisecond precision)."""
    ms = epoch_ms(value)
    return f"{from_ms(ms):%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def dynamodb_item(row: ExportRow, value_uri: str | None = None) -> dict[str, Any]:
    """The row as a DynamoDB item (attribute-value form). ``value_uri``: the value is too large for an
    item and is kept at this s3 URI instead of in ``value``."""
    item: dict[str, Any] = {
        PK: {"S": partition_key(row.identity_id, row.dataset_name)},
        SK: {"S": sort_key(row.record_key)},
        "identity_pool_id": {"S": row.identity_pool_id},
        "identity_id": {"S": row.identity_id},
        "dataset_name": {"S": row.dataset_name},
        "record_key": {"S": row.record_key},
        "value_bytes": {"N": str(len(row.value.encode("utf-8", "surrogatepass")))},
        "sync_count": {"N": str(row.sync_count)},
        "last_modified_at": {"S": iso_ms(row.last_modified_at)},
        "dataset_last_modified_at": {"S": iso_ms(row.dataset_last_modified_at)},
    }
    if value_uri is None:
        item["value"] = {"S": row.value}
    else:
        item["value_s3_uri"] = {"S": value_uri}
    if row.device_last_modified_at is not None:
        item["device_last_modified_at"] = {"S": iso_ms(row.device_last_modified_at)}
    if row.dataset_sync_count is not None:
        item["dataset_sync_count"] = {"N": str(row.dataset_sync_count)}
    return item


def item_size(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it (at least): the UTF-8 bytes of every attribute name and string
    value, and for a number about one byte per two digits plus one."""
    size = 0
    for name, typed in item.items():
        size += len(name.encode("utf-8"))
        ((kind, value),) = typed.items()
        if kind == "S":
            size += len(str(value).encode("utf-8", "surrogatepass"))
        elif kind == "N":
            size += (len(str(value).lstrip("-")) + 1) // 2 + 1
        else:
            size += 1
    return size


def needs_s3(row: ExportRow) -> bool:
    """Whether the row's value is too large for a DynamoDB item (400 KB with everything else)."""
    return item_size(dynamodb_item(row)) > ITEM_VALUE_BUDGET


def dynamodb_json_line(item: Mapping[str, Any]) -> bytes:
    """One line of a DYNAMODB_JSON import file: ``{"Item": {...}}`` and a newline (none inside)."""
    return orjson.dumps({"Item": item}) + b"\n"


def export_table(rows: Sequence[ExportRow]) -> pa.Table:
    """The export's Parquet table of ``rows`` (``EXPORT_SCHEMA``)."""

    def ms(values: list[datetime | None]) -> pa.Array:
        return pa.array([None if v is None else epoch_ms(v) for v in values], pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        )

    return pa.table(
        {
            "identity_pool_id": [r.identity_pool_id for r in rows],
            "identity_id": [r.identity_id for r in rows],
            "dataset_name": [r.dataset_name for r in rows],
            "record_key": [r.record_key for r in rows],
            "record_value": [r.value for r in rows],
            "value_bytes": [len(r.value.encode("utf-8", "surrogatepass")) for r in rows],
            "sync_count": [r.sync_count for r in rows],
            "last_modified_at": ms([r.last_modified_at for r in rows]),
            "device_last_modified_at": ms([r.device_last_modified_at for r in rows]),
            "dataset_sync_count": [r.dataset_sync_count for r in rows],
            "dataset_last_modified_at": ms([r.dataset_last_modified_at for r in rows]),
            "dataset_live_record_count": [r.dataset_live_record_count for r in rows],
        },
        schema=EXPORT_SCHEMA,
    )


#: What ``aws dynamodb import-table`` needs besides the S3 source (docs/migration.md): the table's keys.
DYNAMODB_TABLE_PARAMETERS: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": PK, "AttributeType": "S"},
        {"AttributeName": SK, "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
    "BillingMode": "PAY_PER_REQUEST",
}


# -- a run's Params ------------------------------------------------------------------------------------

IDENTITY_ID_RE = re.compile(r"^[\w-]+:[0-9a-f-]+$")


class SnapshotParamsError(ValueError):
    """A run's Params ask for something the snapshot cannot do; the message says which and how to fix it."""


@dataclass(frozen=True)
class SnapshotParams:
    """What one ``cognito_snapshot`` run walks and writes."""

    identity_pool_ids: tuple[str, ...]
    selection: Selection
    sample_size: int | None = None
    identities: tuple[str, ...] = ()
    export: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, Any] | None, configured_pools: Sequence[str]) -> SnapshotParams:
        """From the run's Params (``identity_pool_ids``, ``identities``, ``export``), checked against the
        configured pools."""
        params = params or {}
        asked = list(params.get("identity_pool_ids") or [])
        unknown = sorted(set(asked) - set(configured_pools))
        if unknown:
            raise SnapshotParamsError(
                f"identity_pool_ids param names pools not in cognito_pipeline.identity_pool_ids: {unknown}"
            )
        pools = tuple(asked or configured_pools)
        export = params.get("export", False)
        if not isinstance(export, bool):
            raise SnapshotParamsError(f"param export is {export!r}; use true or false")
        chosen = params.get("identities", "all")
        if chosen in (None, "", "all"):
            return cls(pools, "all", export=export)
        if isinstance(chosen, int) and not isinstance(chosen, bool):
            if chosen < 1:
                raise SnapshotParamsError(f"param identities is {chosen}; a sample size is at least 1")
            return cls(pools, "sample", sample_size=chosen, export=export)
        if isinstance(chosen, list | tuple) and chosen:
            bad = [i for i in chosen if not isinstance(i, str) or len(i) > 55 or not IDENTITY_ID_RE.fullmatch(i)]
            if bad:
                raise SnapshotParamsError(
                    f"param identities holds {bad[:3]!r}, which are not identity ids (<region>:<uuid>)"
                )
            if len(pools) != 1:
                raise SnapshotParamsError(
                    f"param identities lists identities, but {len(pools)} pools are chosen: an identity id does not "
                    "say its pool; give identity_pool_ids with the one pool they belong to"
                )
            return cls(pools, "list", identities=tuple(dict.fromkeys(chosen)), export=export)
        raise SnapshotParamsError(
            f'param identities is {chosen!r}; use "all", a sample size (a whole number), or a list of identity ids'
        )

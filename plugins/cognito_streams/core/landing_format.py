"""The landing zone's format: the contract between ``cognito_stream_to_s3`` (writer) and
``cognito_s3_to_redshift`` (reader).

A *batch* is what one landing step makes durable for one shard and one range of sequence
numbers. Its objects, all under ``<landing_prefix>/``::

    data/stream=<s>/dt=<YYYY-MM-DD>/hour=<HH>/<shard>/<first>-<last>.parquet      changes (CHANGES_SCHEMA)
    rejects/stream=<s>/dt=<YYYY-MM-DD>/hour=<HH>/<shard>/<first>-<last>.parquet   quarantined records' metadata
    rejects/stream=<s>/dt=<YYYY-MM-DD>/hour=<HH>/<shard>/<first>-<last>.jsonl     their raw bytes (base64)
    manifests/stream=<s>/dt=<YYYY-MM-DD>/<shard>/<first>-<last>.changes.manifest  Redshift COPY manifest
    manifests/stream=<s>/dt=<YYYY-MM-DD>/<shard>/<first>-<last>.rejects.manifest  (only when there are rejects)
    batches/stream=<s>/dt=<YYYY-MM-DD>/<shard>/<first>-<last>.json                the batch descriptor, written last
    _superseded/batches/stream=<s>/dt=<YYYY-MM-DD>/<shard>/<first>-<last>.json    its marker: a replay landed it again
    values/stream=<s>/<shard>/<sequence>/<sub>-<index>.txt                        full text of values cut to fit
    payloads/stream=<s>/<shard>/<sequence>-<sub>.json                             fetched S3Url bodies, kept
    _checkpoints/stream=<s>/<shard>.json                                          per-shard checkpoint + lease
    snapshots/<snapshot>/...                                                      a snapshot's durable cursor
    exports/<snapshot>/...                                                        a snapshot's export

A *snapshot batch* (``cognito_snapshot``, contract version 3) is a batch of the same shape whose rows
were read from Cognito Sync directly instead of Kinesis: its "shard" is ``snapshot=<snapshot id>``, its
"sequence numbers" are positions in the snapshot (:func:`snapshot_position`), its rows have
``payload_type`` ``snapshot`` and its descriptor a :class:`SnapshotLineage`. The loader needs nothing
else: it lists, stages and merges them like any batch (docs/semantics.md, "Snapshots").

``dt``/``hour`` are the UTC arrival time (ApproximateArrivalTimestamp) of the batch's first record,
so the layout is Hive-partitioned for Athena/Redshift Spectrum too. Names are deterministic from
shard and sequence range: re-landing the same range overwrites the same objects.

The descriptor is written after every other object of the batch and before the checkpoint moves,
so a descriptor that exists always describes a complete batch; the loader works from descriptors.

A replay that lands a batch's records again *supersedes* it by writing a marker (a copy of its
descriptor) at :meth:`LandingLayout.superseded_key`; nothing is deleted (the worker may not delete).
Every lister of descriptors skips those that have a marker (``landing_zone/descriptors.py``).

The contract is versioned (``LandedBatch.format_version``; docs/landing.md, "Versions of the landing
contract"). The writer writes :data:`FORMAT_VERSION`; the loader reads every version of
:data:`READABLE_FORMAT_VERSIONS` (old batches stay in the landing zone, and reloads and replays read
them) and refuses any other with a message saying so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

#: The version the writer writes. 1: timestamps INT64 TIMESTAMP(MILLIS, UTC); values and keys holding
#: U+0000 quarantined their whole Kinesis record; ids and dataset names checked in characters only.
#: 2: timestamps INT64 TIMESTAMP(MICROS, UTC); values holding U+0000 stored escaped and flagged, keys
#: holding it escaped (core/values.py); ids and dataset names must have Cognito's documented shape, and
#: the identity pool must be a configured one (else ``invalid_identifier`` / ``unknown_identity_pool`` /
#: ``identity_region_mismatch`` rejects). The columns and their order are the same in both.
#: 3: adds snapshot batches (``cognito_snapshot``): payload type ``snapshot`` and ``LandedBatch.snapshot``;
#: the files' columns and types are those of version 2.
FORMAT_VERSION = 3
#: The versions the loader reads (batches of every version stay in the landing zone and are reloaded).
READABLE_FORMAT_VERSIONS = (1, 2, 3)

#: ``op`` values in the changes file. ``dataset_remove`` rows carry a dataset-level delete
#: (``operation: remove`` with no records): ``record_key`` is null, ``last_modified_at`` is the
#: delete time, and every key of the dataset not newer than it is deleted.
OP_REPLACE = "replace"
OP_REMOVE = "remove"
OP_DATASET_REMOVE = "dataset_remove"
OPS = (OP_REPLACE, OP_REMOVE, OP_DATASET_REMOVE)

#: ``payload_type`` values: how the Kinesis record carried its records, or ``snapshot`` for a row read from
#: Cognito Sync directly by ``cognito_snapshot`` (contract version 3).
PAYLOAD_INLINE = "Inline"
PAYLOAD_S3URL = "S3Url"
PAYLOAD_SNAPSHOT = "snapshot"
PAYLOAD_TYPES = (PAYLOAD_INLINE, PAYLOAD_S3URL, PAYLOAD_SNAPSHOT)

#: Every timestamp of the landing files: INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true) in Parquet, the most
#: common encoding and the one Redshift's Parquet reader is known to read right (version 1 wrote MILLIS).
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
_TS = TIMESTAMP_TYPE

#: One row per change. Column ORDER is part of the contract: Redshift COPY maps Parquet columns to
#: the stage table by position.
CHANGES_SCHEMA = pa.schema(
    [
        pa.field("identity_pool_id", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("dataset_name", pa.string(), nullable=False),
        pa.field("record_key", pa.string()),  # null for dataset_remove
        pa.field("op", pa.string(), nullable=False),
        # null for remove; cut to value_max_bytes at a char boundary, or escaped (U+0000): core/values.py
        pa.field("record_value", pa.string()),
        pa.field("value_bytes", pa.int64()),  # UTF-8 length of the EXACT value; null when the value is null
        pa.field("is_value_cut", pa.bool_(), nullable=False),  # record_value is not the exact value (cut or escaped)
        pa.field("value_ref", pa.string()),  # s3:// URI of the exact value when flagged, else null
        pa.field("sync_count", pa.int64(), nullable=False),  # the record's; for dataset_remove the event's
        pa.field("last_modified_at", _TS, nullable=False),  # the record's; for dataset_remove the event's
        pa.field("device_last_modified_at", _TS),
        pa.field("event_sync_count", pa.int64()),  # dataset-level syncCount of the Kinesis record
        pa.field("event_last_modified_at", _TS),  # dataset-level lastModifiedDate of the Kinesis record
        pa.field("payload_type", pa.string(), nullable=False),  # Inline | S3Url | snapshot (PAYLOAD_TYPES)
        pa.field("stream_name", pa.string(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("sequence_number", pa.string(), nullable=False),
        pa.field("sub_sequence_number", pa.int64(), nullable=False),  # 0 unless KPL-aggregated
        pa.field("record_index", pa.int32(), nullable=False),  # position in kinesisSyncRecords (0 for dataset_remove)
        pa.field("arrived_at", _TS, nullable=False),  # Kinesis ApproximateArrivalTimestamp
        pa.field("landed_file", pa.string(), nullable=False),  # s3:// URI of the Parquet file holding this row
    ]
)

#: Reason codes for quarantined records (``rejects`` files and the ``rejected_records`` table).
REJECT_REASONS = (
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "bad_field_type",
    "unknown_op",
    "unknown_payload_type",
    "duplicate_keys",
    "invalid_identifier",
    "unknown_identity_pool",
    "identity_region_mismatch",
    "s3url_expired",
    "s3url_forbidden",
    "s3url_not_found",
    "s3url_unreachable",
    "s3url_bad_body",
    "kpl_bad_aggregate",
)

#: One row per quarantined Kinesis record (or KPL sub-record). Raw bytes are in the .jsonl beside it.
REJECTS_SCHEMA = pa.schema(
    [
        pa.field("stream_name", pa.string(), nullable=False),
        pa.field("shard_id", pa.string(), nullable=False),
        pa.field("sequence_number", pa.string(), nullable=False),
        pa.field("sub_sequence_number", pa.int64(), nullable=False),
        pa.field("arrived_at", _TS, nullable=False),
        pa.field("reason", pa.string(), nullable=False),  # one of REJECT_REASONS
        pa.field("detail", pa.string(), nullable=False),  # human-readable, no secrets or presigned URLs
        pa.field("identity_pool_id", pa.string()),  # when they could be read
        pa.field("identity_id", pa.string()),
        pa.field("dataset_name", pa.string()),
        pa.field("raw_bytes", pa.int64(), nullable=False),  # size of the raw record
        pa.field("raw_ref", pa.string(), nullable=False),  # s3://<rejects .jsonl>#line=<n> (1-based)
        pa.field("landed_file", pa.string(), nullable=False),  # s3:// URI of this rejects Parquet file
    ]
)


class FileRef(BaseModel):
    """One landed object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str  # s3://bucket/key
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)


class SnapshotLineage(BaseModel):
    """Where a snapshot batch's rows come from (``LandedBatch.snapshot``; contract version 3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_id: str  # the cognito_snapshot run's id (``snapshots/<snapshot_id>/`` holds its cursor)
    identity_pool_id: str
    chunk: str  # the chunk of identities (``snapshots/<snapshot_id>/chunks/<chunk>.json``)
    first_identity: int = Field(ge=0)  # positions in the chunk, first and last included
    last_identity: int = Field(ge=0)
    identities: int = Field(ge=0)
    datasets_read: int = Field(ge=0)  # datasets whose records were listed
    dataset_deletes: int = Field(ge=0)  # dataset_remove rows the walk inferred (docs/semantics.md)


class LandedBatch(BaseModel):
    """The batch descriptor (``batches/...json``): what the loader needs to load one batch.

    A snapshot batch (``snapshot`` set) fills the Kinesis fields with its own lineage: ``shard_id`` is
    ``snapshot=<snapshot id>``, the sequence numbers are snapshot positions, the arrival times are when
    the walk read the first and the last identity, and ``kinesis_records_*`` count dataset reads and
    inferred dataset deletes (one per "sync record"; a snapshot rejects nothing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1, 2, 3] = 3  # = FORMAT_VERSION; READABLE_FORMAT_VERSIONS (Literals for mypy)
    batch_id: str  # "<stream>/<shard>/<first>-<last>"
    stream_name: str
    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    first_arrived_at: datetime
    last_arrived_at: datetime
    landed_at: datetime
    kinesis_records_read: int = Field(ge=0)  # = landed + rejected
    kinesis_records_landed: int = Field(ge=0)
    kinesis_records_rejected: int = Field(ge=0)
    changes: FileRef | None  # None when every record of the batch was rejected or empty
    changes_manifest: str | None
    rejects: FileRef | None
    rejects_raw: FileRef | None
    rejects_manifest: str | None
    replay: bool = False  # landed by a manual replay run (AT_TIMESTAMP)
    snapshot: SnapshotLineage | None = None  # a snapshot batch (version 3): where its rows were read

    def files(self) -> list[FileRef]:
        """Every data file of the batch (changes, rejects), for ``loaded_files``."""
        return [f for f in (self.changes, self.rejects) if f is not None]


#: Where markers of superseded descriptors go, beside ``batches/`` (a folder of its own: out of every listing
#: of ``batches/``, and a lifecycle rule can leave it alone).
SUPERSEDED = "_superseded"


class LandingLayout:
    """Builds every key of the landing zone from the settings' bucket and prefix."""

    def __init__(self, bucket: str, prefix: str, stream_name: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.stream_name = stream_name

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    @staticmethod
    def partition(arrived_at: datetime) -> tuple[str, str]:
        """(``dt=YYYY-MM-DD``, ``hour=HH``) in UTC."""
        ts = arrived_at.astimezone(UTC)
        return f"dt={ts:%Y-%m-%d}", f"hour={ts:%H}"

    def _range(self, first: str, last: str) -> str:
        return f"{first}-{last}"

    def changes_key(self, shard_id: str, first: str, last: str, arrived_at: datetime) -> str:
        dt, hour = self.partition(arrived_at)
        return self._key(
            "data", f"stream={self.stream_name}", dt, hour, shard_id, f"{self._range(first, last)}.parquet"
        )

    def rejects_key(self, shard_id: str, first: str, last: str, arrived_at: datetime) -> str:
        dt, hour = self.partition(arrived_at)
        return self._key(
            "rejects", f"stream={self.stream_name}", dt, hour, shard_id, f"{self._range(first, last)}.parquet"
        )

    def rejects_raw_key(self, shard_id: str, first: str, last: str, arrived_at: datetime) -> str:
        return self.rejects_key(shard_id, first, last, arrived_at).removesuffix(".parquet") + ".jsonl"

    def manifest_key(self, shard_id: str, first: str, last: str, arrived_at: datetime, kind: str) -> str:
        dt, _ = self.partition(arrived_at)
        return self._key(
            "manifests", f"stream={self.stream_name}", dt, shard_id, f"{self._range(first, last)}.{kind}.manifest"
        )

    def batch_key(self, shard_id: str, first: str, last: str, arrived_at: datetime) -> str:
        dt, _ = self.partition(arrived_at)
        return self._key("batches", f"stream={self.stream_name}", dt, shard_id, f"{self._range(first, last)}.json")

    def batches_prefix(self, day: str | None = None) -> str:
        """Prefix to list descriptors: all, or one ``YYYY-MM-DD`` day."""
        base = self._key("batches", f"stream={self.stream_name}")
        return f"{base}/dt={day}/" if day else f"{base}/"

    def superseded_key(self, batch_key: str) -> str:
        """The marker of a superseded descriptor, or of a listing prefix under ``batches/``:
        ``<prefix>/batches/...`` -> ``<prefix>/_superseded/batches/...``. Refuses a key outside ``batches/``
        (a marker elsewhere would hide nothing, or the wrong object)."""
        batches = self._key("batches") + "/"
        if not batch_key.startswith(batches):
            raise ValueError(f"{batch_key!r} is not under {batches!r}: only batch descriptors are superseded")
        return self._key(SUPERSEDED, batch_key[len(self._key()) :].lstrip("/"))

    def superseded_prefix(self, day: str | None = None) -> str:
        """Prefix to list markers: all, or one ``YYYY-MM-DD`` day (mirrors :meth:`batches_prefix`)."""
        return self.superseded_key(self.batches_prefix(day))

    def batch_key_of_marker(self, marker_key: str) -> str:
        """The descriptor key a marker supersedes (the inverse of :meth:`superseded_key`)."""
        head = self._key(SUPERSEDED) + "/"
        if not marker_key.startswith(head):
            raise ValueError(f"{marker_key!r} is not under {head!r}")
        return self._key(marker_key[len(head) :])

    def value_key(self, shard_id: str, sequence_number: str, sub_sequence_number: int, record_index: int) -> str:
        return self._key(
            "values",
            f"stream={self.stream_name}",
            shard_id,
            sequence_number,
            f"{sub_sequence_number}-{record_index}.txt",
        )

    def payload_key(self, shard_id: str, sequence_number: str, sub_sequence_number: int) -> str:
        return self._key(
            "payloads", f"stream={self.stream_name}", shard_id, f"{sequence_number}-{sub_sequence_number}.json"
        )

    def checkpoint_key(self, shard_id: str) -> str:
        return self._key("_checkpoints", f"stream={self.stream_name}", f"{shard_id}.json")

    def snapshot_key(self, snapshot_id: str, *parts: str) -> str:
        """A key of a snapshot's cursor: ``snapshots/<snapshot_id>/<parts...>``."""
        return self._key("snapshots", snapshot_id, *parts)

    def export_key(self, snapshot_id: str, *parts: str) -> str:
        """A key of a snapshot's export: ``exports/<snapshot_id>/<parts...>``."""
        return self._key("exports", snapshot_id, *parts)


#: The "shard" of a snapshot batch: its folder under ``batches/``/``data/``, and ``shard_id`` in its rows.
SNAPSHOT_SHARD_PREFIX = "snapshot="


def snapshot_shard(snapshot_id: str) -> str:
    """``snapshot=<snapshot_id>``: the shard id of a snapshot's batches and rows."""
    return f"{SNAPSHOT_SHARD_PREFIX}{snapshot_id}"


def snapshot_position(pool_index: int, chunk_index: int, identity_index: int) -> str:
    """The "sequence number" of an identity's rows in a snapshot: 18 digits, ordered like the walk
    (pool, chunk, position in the chunk), so that ``lpad(sequence_number, 64, '0')`` orders them too."""
    if not (0 <= pool_index < 1000 and 0 <= chunk_index < 10**9 and 0 <= identity_index < 10**6):
        raise ValueError(f"snapshot position out of range: pool {pool_index}, chunk {chunk_index}, {identity_index}")
    return f"{pool_index:03d}{chunk_index:09d}{identity_index:06d}"


def copy_manifest(files: list[FileRef]) -> dict[str, object]:
    """A Redshift COPY manifest; ``content_length`` is required for Parquet, ``record_count`` lets
    the loader check staged rows against what was landed."""
    return {
        "entries": [
            {"url": f.url, "mandatory": True, "meta": {"content_length": f.bytes, "record_count": f.rows}}
            for f in files
        ]
    }

"""Write one batch to the landing zone, exactly as ``core/landing_format.py`` lays it out.

Order matters, because a crash can happen between any two writes: the full text of cut values and
the data files first, then the rejects, then the COPY manifests, and the batch descriptor LAST. A
descriptor that exists therefore always describes a complete batch, and only after it is written
does the caller move the shard's checkpoint. Names are deterministic from shard and sequence range,
so a rerun after a crash overwrites the same objects (the loader absorbs duplicates).
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cognito_streams.core.decode import CODED_COLUMNS, Decoded, Reject
from cognito_streams.core.landing_format import (
    CHANGES_SCHEMA,
    REJECTS_SCHEMA,
    FileRef,
    LandedBatch,
    LandingLayout,
    SnapshotLineage,
    copy_manifest,
)

log = logging.getLogger(__name__)

#: Columns worth dictionary-encoding in Parquet (few distinct values per row group); values and
#: timestamps are not. Nor is ``sequence_number``: one value per record (a few rows each), so its
#: dictionary used to overflow the 1 MB dictionary page and fall back to plain encoding in the large row
#: groups of a whole-table write; in the smaller row groups of :class:`ChangesParquet` it stayed a
#: dictionary whose hashing cost 4 ms of encoder CPU per 64 MB batch for a file of the same size.
#: They are the columns the decoder hands over dictionary-encoded (``CODED_COLUMNS``): the encoder then
#: writes those dictionaries as they are instead of hashing every row's text.
DICTIONARY_COLUMNS = list(CODED_COLUMNS)
#: Rows per Parquet row group: large enough for efficient scans, small enough that a reader (COPY,
#: Spectrum) can split a big file and that writing needs little memory beyond the table itself.
ROW_GROUP_ROWS = 256 * 1024


@dataclass(frozen=True)
class BatchRange:
    """What identifies a batch: its shard and Kinesis sequence range, and the first arrival time."""

    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    first_arrived_at: datetime
    last_arrived_at: datetime
    #: The shard's folder in object keys when it is not the shard id: a re-created stream's shards
    #: (``Checkpoint.key_suffix``), whose sequence numbers may repeat the deleted stream's.
    key_shard: str | None = None

    @property
    def folder(self) -> str:
        """The shard's folder in the batch's object keys."""
        return self.key_shard or self.shard_id


def _parquet_options(column_names: list[str], compression: str) -> dict[str, Any]:
    """The Parquet writer's options for a landing file with these columns.

    The arrow schema is not stored: the Parquet types alone read back as CHANGES_SCHEMA /
    REJECTS_SCHEMA (strings, UTC microsecond timestamps, ints, required columns), and the decoder's
    dictionary-encoded columns (``DECODED_SCHEMA``: the constants, the records' ids and dataset names,
    keys, ``op``, ``payload_type``) are written as plain (dictionary-paged) strings. Given as
    dictionaries, the encoder writes each chunk's dictionary as it is instead of hashing every row.
    """
    return {
        "store_schema": False,
        "compression": compression,
        "use_dictionary": [c for c in DICTIONARY_COLUMNS if c in column_names],
        "write_statistics": ["sync_count", "last_modified_at", "arrived_at", "sub_sequence_number", "record_index"]
        if "sync_count" in column_names
        else True,
    }


def parquet_bytes(table: pa.Table, compression: str) -> bytes:
    """``table`` as a Parquet file (see ``_parquet_options``), in one go: the rejects file, and the
    changes of a caller that has the whole table (the landing encodes its changes with
    :class:`ChangesParquet` while it decodes)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS, **_parquet_options(table.column_names, compression))
    return bytes(sink.getvalue())


class ChangesParquet:
    """A batch's changes file, encoded piece by piece while the decoder goes on.

    Pass :meth:`write` as ``decode_records``' ``sink``: each chunk's rows become row groups as soon
    as the decoder hands them over (in stream order), while its worker threads decode the next
    chunks; the encoder releases the GIL, so the two overlap and the file is done shortly after the
    last chunk. Reads back exactly like ``parquet_bytes`` of the whole table (same rows, types and
    options); only the row groups are smaller (one or more per chunk).
    """

    def __init__(self, compression: str) -> None:
        self.compression = compression
        #: Rows written so far.
        self.rows = 0
        self._sink = pa.BufferOutputStream()
        self._writer: pq.ParquetWriter | None = None
        self._body: bytes | None = None

    def write(self, table: pa.Table) -> None:
        """Append ``table``'s rows (CHANGES_SCHEMA, up to dictionary encoding) to the file."""
        if self._body is not None:
            raise RuntimeError("the changes file is finished; no more rows can be written to it")
        if not table.num_rows:
            return
        if self._writer is None:
            if not _writes_as(table.schema, CHANGES_SCHEMA):
                raise TypeError(f"changes table does not match the contract's schema: {table.schema}")
            options = _parquet_options(table.column_names, self.compression)
            self._writer = pq.ParquetWriter(self._sink, table.schema, **options)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += table.num_rows

    def finish(self) -> bytes:
        """The file's bytes (its footer written); the file takes no more rows."""
        if self._body is None:
            if self._writer is None:
                raise RuntimeError("the changes file has no rows: a batch without changes writes no changes file")
            self._writer.close()
            self._body = bytes(self._sink.getvalue())
        return self._body


class BatchWriter:
    """Writes batches for one stream into ``s3://<bucket>/<prefix>/``."""

    def __init__(self, s3: Any, layout: LandingLayout, compression: str = "snappy") -> None:
        self.s3 = s3
        self.layout = layout
        self.compression = compression

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.layout.bucket, Key=key, Body=body, ContentType=content_type)

    def write_payload(self, shard_id: str, sequence_number: str, sub_sequence_number: int, body: bytes) -> str:
        """Keep a fetched ``S3Url`` body (its URL will not work later); returns its s3 URI."""
        key = self.layout.payload_key(shard_id, sequence_number, sub_sequence_number)
        self._put(key, body, "application/json")
        return self.layout.url(key)

    def changes_file(self) -> ChangesParquet:
        """An empty changes file for one batch, with this writer's compression (see ``write``)."""
        return ChangesParquet(self.compression)

    def changes_url(self, batch: BatchRange) -> str:
        """The s3 URI the batch's changes file will have (rows carry it in ``landed_file``)."""
        return self.layout.url(
            self.layout.changes_key(
                batch.folder, batch.first_sequence_number, batch.last_sequence_number, batch.first_arrived_at
            )
        )

    def value_url(self, shard_id: str) -> Any:
        """``(sequence_number, sub_sequence_number, record_index) -> s3 URI`` of a cut value's full text."""

        def ref(sequence_number: str, sub_sequence_number: int, record_index: int) -> str:
            return self.layout.url(self.layout.value_key(shard_id, sequence_number, sub_sequence_number, record_index))

        return ref

    def write(
        self,
        batch: BatchRange,
        decoded: Decoded,
        records_read: int,
        records_landed: int,
        replay: bool = False,
        changes_file: ChangesParquet | None = None,
        snapshot: SnapshotLineage | None = None,
    ) -> tuple[LandedBatch, str]:
        """Write every object of the batch, the descriptor last; returns it and its s3 URI.

        ``changes_file`` is the batch's changes already encoded while decoding (every row of
        ``decoded.changes``, in order); without it the changes are encoded here. ``snapshot``: the batch
        holds rows ``cognito_snapshot`` read from Cognito Sync (its descriptor says where from).
        """
        layout = self.layout
        shard, first, last, at = (
            batch.folder,
            batch.first_sequence_number,
            batch.last_sequence_number,
            batch.first_arrived_at,
        )
        rejected = len(decoded.rejects)
        if records_read != records_landed + rejected:
            raise RuntimeError(
                f"batch {shard} {first}-{last}: {records_read} records read but {records_landed} landed "
                f"+ {rejected} rejected; refusing to write an inconsistent batch"
            )
        if changes_file is not None and changes_file.rows != decoded.changes.num_rows:
            raise RuntimeError(
                f"batch {shard} {first}-{last}: the encoded changes file holds {changes_file.rows} rows but the "
                f"decoder made {decoded.changes.num_rows}; refusing to write an inconsistent batch"
            )
        for cut in decoded.cut_values:
            self._put(_key_of(cut.ref, layout), cut.text, "text/plain; charset=utf-8")

        changes = changes_manifest = None
        if decoded.changes.num_rows:
            key = layout.changes_key(shard, first, last, at)
            if not _writes_as(decoded.changes.schema, CHANGES_SCHEMA):
                raise TypeError(f"changes table does not match the contract's schema: {decoded.changes.schema}")
            body = parquet_bytes(decoded.changes, self.compression) if changes_file is None else changes_file.finish()
            self._put(key, body, "application/vnd.apache.parquet")
            changes = FileRef(url=layout.url(key), rows=decoded.changes.num_rows, bytes=len(body))
            manifest_key = layout.manifest_key(shard, first, last, at, "changes")
            self._put(manifest_key, orjson.dumps(copy_manifest([changes])), "application/json")
            changes_manifest = layout.url(manifest_key)

        rejects = rejects_raw = rejects_manifest = None
        if decoded.rejects:
            raw_key = layout.rejects_raw_key(shard, first, last, at)
            parquet_key = layout.rejects_key(shard, first, last, at)
            raw_body = rejects_jsonl(decoded.rejects, layout.stream_name, batch.shard_id)
            self._put(raw_key, raw_body, "application/x-ndjson")
            rejects_raw = FileRef(url=layout.url(raw_key), rows=len(decoded.rejects), bytes=len(raw_body))
            table = rejects_table(
                decoded.rejects, layout.stream_name, batch.shard_id, layout.url(raw_key), layout.url(parquet_key)
            )
            body = parquet_bytes(table, self.compression)
            self._put(parquet_key, body, "application/vnd.apache.parquet")
            rejects = FileRef(url=layout.url(parquet_key), rows=table.num_rows, bytes=len(body))
            manifest_key = layout.manifest_key(shard, first, last, at, "rejects")
            self._put(manifest_key, orjson.dumps(copy_manifest([rejects])), "application/json")
            rejects_manifest = layout.url(manifest_key)

        descriptor = LandedBatch(
            batch_id=f"{layout.stream_name}/{shard}/{first}-{last}",  # the folder: unique per stream incarnation
            stream_name=layout.stream_name,
            shard_id=batch.shard_id,
            first_sequence_number=first,
            last_sequence_number=last,
            first_arrived_at=batch.first_arrived_at,
            last_arrived_at=batch.last_arrived_at,
            landed_at=datetime.now(UTC),
            kinesis_records_read=records_read,
            kinesis_records_landed=records_landed,
            kinesis_records_rejected=rejected,
            changes=changes,
            changes_manifest=changes_manifest,
            rejects=rejects,
            rejects_raw=rejects_raw,
            rejects_manifest=rejects_manifest,
            replay=replay,
            snapshot=snapshot,
        )
        descriptor_key = layout.batch_key(shard, first, last, at)
        self._put(descriptor_key, descriptor.model_dump_json(indent=1).encode(), "application/json")
        return descriptor, layout.url(descriptor_key)


def _writes_as(schema: pa.Schema, contract: pa.Schema) -> bool:
    """``schema`` is ``contract`` up to dictionary encoding of string columns."""
    if schema.names != contract.names:
        return False
    for got, want in zip(schema, contract, strict=True):
        kind = got.type.value_type if pa.types.is_dictionary(got.type) else got.type
        if kind != want.type or got.nullable != want.nullable:
            return False
    return True


def _key_of(url: str, layout: LandingLayout) -> str:
    prefix = f"s3://{layout.bucket}/"
    if not url.startswith(prefix):
        raise ValueError(f"{url} is not in the landing bucket {layout.bucket}")
    return url[len(prefix) :]


def _iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


#: Below 2**32 seconds after the epoch (the year 2106), ``_iso_ms``'s float seconds round back to the
#: exact millisecond, so numpy's exact formatting writes the same text; later times can differ by one.
NUMPY_ISO_MS_MAX = 2**32 * 1000


def _iso_ms_all(epoch_ms: list[int]) -> list[str]:
    """``_iso_ms`` of each value. numpy formats them all at once in a third of the time of a datetime
    each (0.8 against 2.6 us, half the cost of a rejects line), for the range where it writes the
    same text: every Kinesis arrival time; others go one by one."""
    try:
        values = np.array(epoch_ms, dtype=np.int64)
    except OverflowError:
        return [_iso_ms(value) for value in epoch_ms]
    if not len(values) or values.min() < 0 or values.max() >= NUMPY_ISO_MS_MAX:
        return [_iso_ms(value) for value in epoch_ms]
    texts: list[str] = np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms").tolist()
    return [f"{text}+00:00" for text in texts]


def rejects_jsonl(rejects: list[Reject], stream_name: str, shard_id: str) -> bytes:
    """The rejects' raw bytes (base64), reason and coordinates: one JSON object per line, line n = reject n."""
    out = io.BytesIO()
    arrived = _iso_ms_all([reject.arrived_at_ms for reject in rejects])
    for line, (reject, arrived_at) in enumerate(zip(rejects, arrived, strict=True), start=1):
        out.write(
            orjson.dumps(
                {
                    "line": line,
                    "stream_name": stream_name,
                    "shard_id": shard_id,
                    "sequence_number": reject.sequence_number,
                    "sub_sequence_number": reject.sub_sequence_number,
                    "arrived_at": arrived_at,
                    "reason": reject.reason,
                    "detail": reject.detail,
                    "raw_base64": base64.b64encode(reject.raw).decode("ascii"),
                }
            )
        )
        out.write(b"\n")
    return out.getvalue()


def _storable(text: str | None, max_bytes: int = 65_535) -> str | None:
    """``text``, or None when the warehouse cannot hold it (U+0000, longer than its column): a
    quarantined record's ids may be like that (it can be why it was quarantined), and one such value
    would fail every load of the rejects file. Its raw bytes keep it whole."""
    if text is None or "\x00" in text or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        return None
    return text


def rejects_table(rejects: list[Reject], stream_name: str, shard_id: str, raw_url: str, parquet_url: str) -> pa.Table:
    """The rejects' metadata in REJECTS_SCHEMA; ``raw_ref`` points at the line of the .jsonl."""
    n = len(rejects)
    return pa.table(
        {
            "stream_name": [stream_name] * n,
            "shard_id": [shard_id] * n,
            "sequence_number": [r.sequence_number for r in rejects],
            "sub_sequence_number": [r.sub_sequence_number for r in rejects],
            # Epoch milliseconds, as the contract's (microsecond) timestamps: cast as milliseconds first.
            "arrived_at": pa.array([r.arrived_at_ms for r in rejects], pa.int64())
            .cast(pa.timestamp("ms", tz="UTC"))
            .cast(REJECTS_SCHEMA.field("arrived_at").type),
            "reason": [r.reason for r in rejects],
            "detail": [_storable(r.detail) or r.reason for r in rejects],
            "identity_pool_id": [_storable(r.identity_pool_id, 64) for r in rejects],
            "identity_id": [_storable(r.identity_id, 64) for r in rejects],
            "dataset_name": [_storable(r.dataset_name, 128) for r in rejects],
            "raw_bytes": [len(r.raw) for r in rejects],
            "raw_ref": [f"{raw_url}#line={i}" for i in range(1, n + 1)],
            "landed_file": [parquet_url] * n,
        },
        schema=REJECTS_SCHEMA,
    )

"""The landing contract pinned (issue 17 item 3): the Parquet schema of the files the landing writes, read from
the files themselves, and the contract's version.

Redshift's COPY maps the Parquet columns by position and converts by their physical and logical types, so any
change here changes what the loader's COPY does: it must come with a new ``FORMAT_VERSION`` (the loader still
reading the previous versions) and a line in docs/landing.md, "Versions of the landing contract". This test is
meant to fail on any such change, so that it is made on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records
from cognito_streams.core.landing_format import (
    CHANGES_SCHEMA,
    FORMAT_VERSION,
    PAYLOAD_TYPES,
    READABLE_FORMAT_VERSIONS,
    REJECTS_SCHEMA,
    LandedBatch,
    LandingLayout,
)
from cognito_streams.landing_zone.writer import BatchRange, BatchWriter
from tests.landing_records import IDENTITY, POOL, SAMPLES, change, dumps, record

# (column, physical type, logical type, repetition, pages) in file order. TIMESTAMP(MICROS, UTC) is INT64
# TIMESTAMP_MICROS with isAdjustedToUTC=true; "dictionary": dictionary-encoded (RLE_DICTIONARY) in the file.
CHANGES_FILE = [
    ("identity_pool_id", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("identity_id", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("dataset_name", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("record_key", "BYTE_ARRAY", "STRING", "OPTIONAL", "dictionary"),
    ("op", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("record_value", "BYTE_ARRAY", "STRING", "OPTIONAL", "plain"),
    ("value_bytes", "INT64", "-", "OPTIONAL", "plain"),
    ("is_value_cut", "BOOLEAN", "-", "REQUIRED", "plain"),
    ("value_ref", "BYTE_ARRAY", "STRING", "OPTIONAL", "plain"),
    ("sync_count", "INT64", "-", "REQUIRED", "plain"),
    ("last_modified_at", "INT64", "TIMESTAMP(MICROS, UTC)", "REQUIRED", "plain"),
    ("device_last_modified_at", "INT64", "TIMESTAMP(MICROS, UTC)", "OPTIONAL", "plain"),
    ("event_sync_count", "INT64", "-", "OPTIONAL", "plain"),
    ("event_last_modified_at", "INT64", "TIMESTAMP(MICROS, UTC)", "OPTIONAL", "plain"),
    ("payload_type", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("stream_name", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("shard_id", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("sequence_number", "BYTE_ARRAY", "STRING", "REQUIRED", "plain"),
    ("sub_sequence_number", "INT64", "-", "REQUIRED", "plain"),
    ("record_index", "INT32", "-", "REQUIRED", "plain"),
    ("arrived_at", "INT64", "TIMESTAMP(MICROS, UTC)", "REQUIRED", "plain"),
    ("landed_file", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
]
# The rejects file: the same dictionary columns as the changes file's, where it has them.
REJECTS_FILE = [
    ("stream_name", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("shard_id", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
    ("sequence_number", "BYTE_ARRAY", "STRING", "REQUIRED", "plain"),
    ("sub_sequence_number", "INT64", "-", "REQUIRED", "plain"),
    ("arrived_at", "INT64", "TIMESTAMP(MICROS, UTC)", "REQUIRED", "plain"),
    ("reason", "BYTE_ARRAY", "STRING", "REQUIRED", "plain"),
    ("detail", "BYTE_ARRAY", "STRING", "REQUIRED", "plain"),
    ("identity_pool_id", "BYTE_ARRAY", "STRING", "OPTIONAL", "dictionary"),
    ("identity_id", "BYTE_ARRAY", "STRING", "OPTIONAL", "dictionary"),
    ("dataset_name", "BYTE_ARRAY", "STRING", "OPTIONAL", "dictionary"),
    ("raw_bytes", "INT64", "-", "REQUIRED", "plain"),
    ("raw_ref", "BYTE_ARRAY", "STRING", "REQUIRED", "plain"),
    ("landed_file", "BYTE_ARRAY", "STRING", "REQUIRED", "dictionary"),
]


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, **kwargs: Any) -> None:
        self.objects[kwargs["Key"]] = kwargs["Body"]


def land(compression: str) -> tuple[LandedBatch, FakeS3]:
    """One batch through the landing's decoder and writer: changes (with a cut value, a value and a key
    holding U+0000, a dataset delete), and rejects."""
    data = [
        SAMPLES["inline-replace"],
        SAMPLES["inline-remove"],
        SAMPLES["dataset-remove"],
        dumps(
            record([change("long", "x" * 200, 3, 1_424_801_900_000), change("n\x00l", "a\x00b", 3, 1_424_801_900_000)])
        ),
        b"{not json",
        dumps(record([change("k", "v", 1, 1)], identity="us-east-1:" + "€" * 40)),
    ]
    sequences = [str(10**20 + i) for i in range(len(data))]
    arrived = [1_424_801_824_343 + i for i in range(len(data))]
    s3 = FakeS3()
    writer = BatchWriter(s3, LandingLayout(bucket="landing", prefix="p", stream_name="s"), compression)
    span = BatchRange(
        "shardId-000000000000",
        sequences[0],
        sequences[-1],
        *(pa.scalar(a, pa.timestamp("ms", tz="UTC")).as_py() for a in (arrived[0], arrived[-1])),
    )
    options = DecodeOptions(
        stream_name="s",
        shard_id=span.shard_id,
        landed_file=writer.changes_url(span),
        value_ref=writer.value_url(span.shard_id),
        value_max_bytes=100,
        identity_pool_ids=(POOL,),
    )
    changes_file = writer.changes_file()
    out = decode_records(KinesisRecords(data, sequences, arrived), options, sink=changes_file.write)
    descriptor, _ = writer.write(span, out, out.records_read, out.records_landed, changes_file=changes_file)
    return descriptor, s3


def pinned(body: bytes) -> list[tuple[str, str, str, str, str]]:
    """What the file says of each column: physical type, logical type, repetition, pages."""
    parquet = pq.ParquetFile(pa.BufferReader(body))
    out = []
    for i, name in enumerate(parquet.schema_arrow.names):
        column = parquet.schema.column(i)
        logical = json.loads(column.logical_type.to_json())
        if logical["Type"] == "String":
            kind = "STRING"
        elif logical["Type"] == "Timestamp":
            unit = {"milliseconds": "MILLIS", "microseconds": "MICROS", "nanoseconds": "NANOS"}[logical["timeUnit"]]
            kind = f"TIMESTAMP({unit}, {'UTC' if logical['isAdjustedToUTC'] else 'local'})"
        else:
            kind = "-" if logical["Type"] == "None" else logical["Type"]
        assert column.max_repetition_level == 0  # no repeated (nested) column
        repetition = "OPTIONAL" if column.max_definition_level else "REQUIRED"
        chunks = [parquet.metadata.row_group(g).column(i) for g in range(parquet.metadata.num_row_groups)]
        pages = {"dictionary" if c.has_dictionary_page else "plain" for c in chunks}
        assert len(pages) == 1, f"{name}: {pages}"
        out.append((name, column.physical_type, kind, repetition, pages.pop()))
    return out


def file_of(s3: FakeS3, url: str) -> bytes:
    return s3.objects[url.removeprefix("s3://landing/")]


@pytest.mark.parametrize("compression", ["snappy", "zstd"])
def test_the_landed_files_parquet_schema_is_the_pinned_contract(compression: str) -> None:
    # GIVEN a batch landed by the landing's decoder and writer
    descriptor, s3 = land(compression)
    assert descriptor.changes is not None and descriptor.rejects is not None
    changes, rejects = file_of(s3, descriptor.changes.url), file_of(s3, descriptor.rejects.url)
    # THEN each file's Parquet schema is exactly the pinned one: physical and logical types, repetition,
    # dictionary pages as written, in the contract's column order (COPY maps by position)
    assert pinned(changes) == CHANGES_FILE
    assert pinned(rejects) == REJECTS_FILE
    assert [c[0] for c in CHANGES_FILE] == CHANGES_SCHEMA.names and [c[0] for c in REJECTS_FILE] == REJECTS_SCHEMA.names
    for body in (changes, rejects):
        metadata = pq.ParquetFile(pa.BufferReader(body)).metadata
        # AND every column chunk has the configured compression; no Arrow schema is stored in the file
        assert {
            metadata.row_group(g).column(i).compression
            for g in range(metadata.num_row_groups)
            for i in range(metadata.num_columns)
        } == {compression.upper()}
        assert b"ARROW:schema" not in (metadata.metadata or {})
        assert metadata.format_version == "2.6"
        # AND the file reads back as exactly the contract's Arrow schema
        assert pq.read_table(pa.BufferReader(body)).schema.equals(CHANGES_SCHEMA if body is changes else REJECTS_SCHEMA)


def test_the_arrow_schemas_hold_only_types_redshifts_copy_documents() -> None:
    # No nanoseconds (Redshift reads no INT96/nanosecond timestamps right), no 64-bit offsets, nothing nested.
    for schema in (CHANGES_SCHEMA, REJECTS_SCHEMA):
        for field in schema:
            kind = field.type
            assert not (pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)), field
            assert not pa.types.is_nested(kind) and not pa.types.is_dictionary(kind), field
            if pa.types.is_timestamp(kind):
                assert (kind.unit, kind.tz) == ("us", "UTC"), field
            assert (
                pa.types.is_string(kind)
                or pa.types.is_boolean(kind)
                or kind in (pa.int32(), pa.int64())
                or pa.types.is_timestamp(kind)
            ), field


def test_the_contract_version_is_pinned_and_the_descriptor_carries_it() -> None:
    # The version the writer writes, and the ones the loader reads: version 2 changed the timestamps'
    # unit and how values and keys holding U+0000 are stored; version 3 added snapshot batches (payload type
    # snapshot, the descriptor's snapshot lineage) with the files of version 2 (docs/landing.md, "Versions").
    assert FORMAT_VERSION == 3 and READABLE_FORMAT_VERSIONS == (1, 2, 3)
    assert PAYLOAD_TYPES == ("Inline", "S3Url", "snapshot")
    descriptor, s3 = land("snappy")
    (key,) = [k for k in s3.objects if k.startswith("p/batches/")]
    assert orjson.loads(s3.objects[key])["format_version"] == FORMAT_VERSION == descriptor.format_version
    assert orjson.loads(s3.objects[key])["snapshot"] is None  # a Kinesis batch
    # AND descriptors of versions 1 and 2 still validate (old batches stay in the landing zone and are reloaded)
    for version in (1, 2):
        old = {**orjson.loads(s3.objects[key]), "format_version": version}
        old.pop("snapshot")
        assert LandedBatch.model_validate(old).format_version == version


def test_a_snapshot_batch_has_the_files_of_a_kinesis_batch_and_its_lineage_in_the_descriptor() -> None:
    from datetime import UTC, datetime

    from cognito_streams.core.decode import Decoded
    from cognito_streams.core.landing_format import SnapshotLineage, snapshot_position, snapshot_shard
    from cognito_streams.core.snapshot import SnapshotChange, changes_table

    # GIVEN a snapshot's rows: a value, a remove, a value holding U+0000 and a dataset delete it inferred
    shard = snapshot_shard("run-1a2b3c4d")
    seq = snapshot_position(0, 1, 2)
    at = 1_424_801_900_000
    rows = [
        SnapshotChange(POOL, IDENTITY, "prefs", "k", "replace", "v", 3, at, at, 5, at, seq, 0, 0, at),
        SnapshotChange(POOL, IDENTITY, "prefs", "gone", "remove", None, 4, at, None, 5, at, seq, 0, 1, at),
        SnapshotChange(POOL, IDENTITY, "prefs", "n\x00l", "replace", "a\x00b", 5, at, at, 5, at, seq, 0, 2, at),
        SnapshotChange(POOL, IDENTITY, "old", None, "dataset_remove", None, 9, at, None, None, None, seq, 1, 0, at),
    ]
    s3 = FakeS3()
    writer = BatchWriter(s3, LandingLayout(bucket="landing", prefix="p", stream_name="s"), "snappy")
    moment = datetime.fromtimestamp(at / 1000, UTC)
    span = BatchRange(shard, seq, seq, moment, moment)
    table, full = changes_table(
        rows, stream_name="s", shard_id=shard, landed_file=writer.changes_url(span), value_max_bytes=100,
        value_ref=writer.value_url(shard),
    )  # fmt: skip
    lineage = SnapshotLineage(
        snapshot_id="run-1a2b3c4d", identity_pool_id=POOL, chunk="000-000001", first_identity=2, last_identity=2,
        identities=1, datasets_read=1, dataset_deletes=1,
    )  # fmt: skip
    decoded = Decoded(changes=table, cut_values=[], records_read=2, records_landed=2)
    descriptor, _ = writer.write(span, decoded, 2, 2, snapshot=lineage)
    # THEN its changes file has exactly the pinned layout of every changes file ...
    (changes_key,) = [k for k in s3.objects if k.startswith("p/data/")]
    body = s3.objects[changes_key]
    assert pinned(body) == CHANGES_FILE
    assert pq.read_table(pa.BufferReader(body)).schema.equals(CHANGES_SCHEMA)
    # ... its rows say snapshot, and the U+0000 value and key are stored as the stream's are
    read = pq.read_table(pa.BufferReader(body)).to_pylist()
    assert {r["payload_type"] for r in read} == {"snapshot"} and {r["shard_id"] for r in read} == {shard}
    nul = read[2]
    assert (nul["record_key"], nul["record_value"], nul["is_value_cut"], nul["value_bytes"]) == (
        "n\\0l",
        "a\\0b",
        True,
        3,
    )
    assert [f.text for f in full] == [b"a\x00b"] and nul["value_ref"] == full[0].ref
    # ... and the descriptor names the snapshot
    assert descriptor.format_version == 3 and descriptor.snapshot == lineage
    assert descriptor.shard_id == shard and descriptor.kinesis_records_read == 2


class ReadableS3(FakeS3):
    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        import io

        return {"Body": io.BytesIO(self.objects[Key])}


@pytest.mark.parametrize("version", [0, 4, "2", None])
def test_the_loader_refuses_a_descriptor_of_a_version_it_does_not_know_and_says_what_to_do(version: object) -> None:
    from datetime import date

    from cognito_streams.landing_zone.reader import DescriptorRef, LandingReader
    from cognito_streams.warehouse.models import LoadCheckError

    # GIVEN a landed batch whose descriptor says another version of the contract (a newer landing DAG)
    _, written = land("snappy")
    s3 = ReadableS3()
    s3.objects = dict(written.objects)
    (key,) = [k for k in s3.objects if k.startswith("p/batches/")]
    s3.objects[key] = orjson.dumps({**orjson.loads(s3.objects[key]), "format_version": version})
    reader = LandingReader(s3, LandingLayout(bucket="landing", prefix="p", stream_name="s"))
    ref = DescriptorRef(url=f"s3://landing/{key}", key=key, landing_day=date(2015, 2, 24))
    # WHEN the loader reads it  THEN it refuses it, naming the version, the ones it reads and what to do
    with pytest.raises(LoadCheckError) as refused:
        reader.read_batch(ref)
    message = str(refused.value)
    assert f"format_version {version!r}" in message and "reads versions 1, 2, 3" in message
    assert ref.url in message and "deploy the same release" in message


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_loader_reads_descriptors_of_every_version_it_knows(version: int) -> None:
    from datetime import date

    from cognito_streams.landing_zone.reader import DescriptorRef, LandingReader

    _, written = land("snappy")
    s3 = ReadableS3()
    s3.objects = dict(written.objects)
    (key,) = [k for k in s3.objects if k.startswith("p/batches/")]
    s3.objects[key] = orjson.dumps({**orjson.loads(s3.objects[key]), "format_version": version})
    reader = LandingReader(s3, LandingLayout(bucket="landing", prefix="p", stream_name="s"))
    batch = reader.read_batch(DescriptorRef(url=f"s3://landing/{key}", key=key, landing_day=date(2015, 2, 24)))
    assert batch.batch.format_version == version

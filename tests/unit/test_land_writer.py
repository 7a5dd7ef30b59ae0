"""The landing writer's Parquet files (pure: no S3): the changes file encoded while decoding reads back
exactly like the whole table written at once."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records
from cognito_streams.core.landing_format import CHANGES_SCHEMA, LandingLayout
from cognito_streams.landing_zone.writer import (
    NUMPY_ISO_MS_MAX,
    BatchRange,
    BatchWriter,
    ChangesParquet,
    _iso_ms,
    _iso_ms_all,
    parquet_bytes,
)
from tests.landing_records import bad_records, seed_records

OPTIONS = DecodeOptions(
    stream_name="cognito-sync-stream",
    shard_id="shardId-000000000001",
    landed_file="s3://landing/data/x.parquet",
    value_ref=lambda seq, sub, index: f"s3://landing/values/{seq}/{sub}-{index}.txt",
    value_max_bytes=100,  # some values are cut
    chunk_bytes=50_000,
    block_bytes=8_192,
)


def records(n: int, seed: int) -> KinesisRecords:
    data = seed_records(n, seed=seed)
    for i, (_, raw) in enumerate(bad_records()):
        data.insert(i * 37, raw)
    return KinesisRecords(
        data, [str(10**20 + i) for i in range(len(data))], [1_700_000_000_000 + i for i in range(len(data))]
    )


@pytest.mark.parametrize("compression", ["snappy", "zstd"])
def test_the_changes_file_encoded_while_decoding_reads_back_like_the_whole_table(compression: str) -> None:
    # GIVEN a batch of several chunks, its changes encoded piece by piece as the decoder hands them over
    changes_file = ChangesParquet(compression)
    out = decode_records(records(1_000, seed=3), OPTIONS, sink=changes_file.write)
    body = changes_file.finish()
    # THEN the file holds every row once, in order, and reads back exactly like the table written at once
    back = pq.read_table(pa.BufferReader(body))
    assert changes_file.rows == out.changes.num_rows == back.num_rows
    assert back.schema.equals(CHANGES_SCHEMA)
    assert back.equals(pq.read_table(pa.BufferReader(parquet_bytes(out.changes, compression))))
    # with one row group or more per chunk (each encoded as soon as its chunk was decoded)
    metadata = pq.ParquetFile(pa.BufferReader(body)).metadata
    assert metadata.num_row_groups > 1
    assert metadata.row_group(0).column(0).compression.lower() == compression
    # and the constant columns written as strings, the statistics on the columns the loader prunes by
    assert pq.ParquetFile(pa.BufferReader(body)).schema_arrow.field("stream_name").type == pa.string()
    columns = {metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i) for i in range(22)}
    assert columns["arrived_at"].is_stats_set and not columns["record_value"].is_stats_set


def test_a_finished_changes_file_takes_no_more_rows_and_an_empty_one_has_no_bytes() -> None:
    changes_file = ChangesParquet("snappy")
    with pytest.raises(RuntimeError, match="no rows"):
        changes_file.finish()
    out = decode_records(records(50, seed=4), OPTIONS, sink=changes_file.write)
    assert changes_file.finish() == changes_file.finish()  # finishing twice gives the same file
    with pytest.raises(RuntimeError, match="finished"):
        changes_file.write(out.changes)


def test_a_table_of_another_schema_is_refused() -> None:
    with pytest.raises(TypeError, match="contract's schema"):
        ChangesParquet("snappy").write(pa.table({"identity_pool_id": ["p"]}))


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, **kwargs: Any) -> None:
        self.objects[kwargs["Key"]] = kwargs["Body"]


def test_the_writer_refuses_a_changes_file_that_disagrees_with_the_decoded_rows() -> None:
    # GIVEN a batch decoded with its changes file, which then missed some rows
    s3 = FakeS3()
    writer = BatchWriter(s3, LandingLayout(bucket="landing", prefix="p", stream_name="cognito-sync-stream"))
    batch = records(200, seed=5)
    changes_file = writer.changes_file()
    out = decode_records(batch, OPTIONS, sink=changes_file.write)
    short = ChangesParquet("snappy")
    short.write(out.changes.slice(0, out.changes.num_rows - 1))
    span = BatchRange(
        "shardId-000000000001",
        batch.sequence_numbers[0],
        batch.sequence_numbers[-1],
        pa.scalar(batch.arrived_at_ms[0], pa.timestamp("ms", tz="UTC")).as_py(),
        pa.scalar(batch.arrived_at_ms[-1], pa.timestamp("ms", tz="UTC")).as_py(),
    )
    # WHEN it is written  THEN nothing is written and the mismatch is named
    with pytest.raises(RuntimeError, match="changes file holds"):
        writer.write(span, out, out.records_read, out.records_landed, changes_file=short)
    assert s3.objects == {}
    # and the right one lands as the changes file, the descriptor last
    descriptor, _ = writer.write(span, out, out.records_read, out.records_landed, changes_file=changes_file)
    assert descriptor.changes is not None and descriptor.changes.rows == out.changes.num_rows
    key = descriptor.changes.url.removeprefix("s3://landing/")
    assert pq.read_table(pa.BufferReader(s3.objects[key])).num_rows == out.changes.num_rows
    assert list(s3.objects)[-1].endswith(".json") and "batch" in list(s3.objects)[-1]


#: Arrival times: recent ones, the whole range numpy formats, around its end (where float seconds
#: start to round to another millisecond) and beyond it, before the epoch, and the datetime's limits.
arrival_ms = st.one_of(
    st.integers(1_600_000_000_000, 1_900_000_000_000),
    st.integers(0, NUMPY_ISO_MS_MAX - 1),
    st.integers(NUMPY_ISO_MS_MAX - 10**9, NUMPY_ISO_MS_MAX + 10**9),
    st.integers(NUMPY_ISO_MS_MAX, 253_402_300_799_999),
    st.integers(-62_135_596_800_000, 0),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(arrival_ms, max_size=20))
def test_arrival_times_formatted_at_once_read_as_one_by_one(values: list[int]) -> None:
    assert _iso_ms_all(values) == [_iso_ms(value) for value in values]

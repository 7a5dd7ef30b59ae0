"""Properties of decoding + landing (hypothesis): what goes in comes back out of the Parquet file."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cognito_streams.core.decode import (
    DATASET_PATTERN,
    ID_PATTERN,
    DecodeOptions,
    KinesisRecords,
    decode_records,
)
from cognito_streams.core.decode.rules import dataset_names, dataset_shaped, id_shaped
from cognito_streams.core.landing_format import CHANGES_SCHEMA
from cognito_streams.core.values import decoded_value, original_key, stored_key, stored_value
from cognito_streams.landing_zone.writer import ChangesParquet, parquet_bytes
from tests.landing_records import bad_records, dumps, record

MAX = 40  # a tiny value_max_bytes, so that cutting happens often
POOLS = ("us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f", "eu-west-1:00ff")
OPTIONS = DecodeOptions(
    stream_name="s",
    shard_id="shardId-000000000000",
    landed_file="s3://b/data.parquet",
    value_ref=lambda seq, sub, index: f"s3://b/values/{seq}/{sub}-{index}.txt",
    value_max_bytes=MAX,
    identity_pool_ids=POOLS,
    chunk_bytes=2_000,  # several chunks and blocks even for small examples
    block_bytes=1_024,
)

# Any valid text (no lone surrogates), U+0000, backslashes and the text "\0" often: Cognito accepts them in
# keys and values, which land in the form core/values.py gives them.
storable = st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from(["\x00", "\\", "0"]))
texts = st.text(storable, max_size=60)
dates = st.integers(min_value=0, max_value=4_102_444_800_000)
changes = st.fixed_dictionaries(
    {
        "key": st.text(storable, min_size=1, max_size=12),
        "value": st.one_of(st.none(), texts),
        "syncCount": st.integers(min_value=0, max_value=2**63 - 1),
        "lastModifiedDate": dates,
        "deviceLastModifiedDate": st.one_of(st.none(), dates),
        "op": st.sampled_from(["replace", "remove"]),
    }
)


@st.composite
def cognito_records(draw: st.DrawFn) -> dict[str, Any]:
    items = draw(st.lists(changes, max_size=5, unique_by=lambda c: c["key"]))
    operation = draw(st.sampled_from(["replace", "remove"]))
    if operation == "remove" and draw(st.booleans()):
        items = []
    pool = draw(st.sampled_from(POOLS))
    region = pool.split(":")[0]
    return record(
        items,
        pool=pool,
        identity=region + ":" + draw(st.from_regex(r"[0-9a-f-]{1,30}", fullmatch=True)),
        dataset=draw(st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True)),
        operation=operation,
        sync_count=draw(st.integers(min_value=0, max_value=10**12)),
        at=draw(dates),
        dataset_field=draw(st.sampled_from(["dataSetName", "datasetName"])),
    )


def _ts(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def expected_rows(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The reference: what the changes file must hold, computed record by record."""
    out = []
    for position, rec in enumerate(records):
        dataset = rec.get("dataSetName", rec.get("datasetName"))
        head = (rec["identityPoolId"], rec["identityId"], dataset)
        seq = str(1000 + position)
        items = rec["kinesisSyncRecords"] or []
        for index, item in enumerate(items):
            value = None if item["op"] == "remove" else item["value"]
            stored = None if value is None else stored_value(value, MAX)
            cut = stored is not None and stored.flagged
            out.append(
                (
                    *head,
                    stored_key(item["key"]),
                    item["op"],
                    None if stored is None else stored.text,
                    None if value is None else len(value.encode()),
                    cut,
                    f"s3://b/values/{seq}/0-{index}.txt" if cut else None,
                    item["syncCount"],
                    _ts(item["lastModifiedDate"]),
                    _ts(item["deviceLastModifiedDate"]),
                    rec["syncCount"],
                    seq,
                    index,
                )
            )
        if not items and rec["operation"] == "remove":
            out.append(
                (
                    *head,
                    None,
                    "dataset_remove",
                    None,
                    None,
                    False,
                    None,
                    rec["syncCount"],
                    _ts(rec["lastModifiedDate"]),
                    None,
                    rec["syncCount"],
                    seq,
                    0,
                )
            )
    return sorted(out, key=repr)


def landed_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    got = []
    for row in table.to_pylist():
        got.append(
            (
                row["identity_pool_id"],
                row["identity_id"],
                row["dataset_name"],
                row["record_key"],
                row["op"],
                row["record_value"],
                row["value_bytes"],
                row["is_value_cut"],
                row["value_ref"],
                row["sync_count"],
                row["last_modified_at"],
                row["device_last_modified_at"],
                row["event_sync_count"],
                row["sequence_number"],
                row["record_index"],
            )
        )
    return sorted(got, key=repr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(cognito_records(), max_size=25))
def test_landing_then_reading_the_parquet_gives_back_exactly_the_changes(records: list[dict[str, Any]]) -> None:
    # GIVEN any valid records  WHEN decoded and written as the landed Parquet file, then read back
    data = [dumps(r) for r in records]
    # (as the landing does it: the changes file encoded while decoding)
    changes_file = ChangesParquet("zstd")
    out = decode_records(
        KinesisRecords(data, [str(1000 + i) for i in range(len(data))], [1_700_000_000_000] * len(data)),
        OPTIONS,
        sink=changes_file.write,
    )
    assert not out.rejects and out.records_landed == len(records)
    if not out.changes.num_rows:
        assert expected_rows(records) == []
        return
    back = pq.read_table(pa.BufferReader(changes_file.finish()))
    assert back.equals(pq.read_table(pa.BufferReader(parquet_bytes(out.changes, "zstd"))))
    # THEN the file has the contract's schema and exactly the changes that went in
    assert back.schema.equals(CHANGES_SCHEMA)
    assert landed_rows(back) == expected_rows(records)
    # and every flagged row holds what gives its value back (escaped) or a prefix of it, on a character
    # boundary, within value_max_bytes and free of U+0000, with its exact bytes kept at value_ref
    full_texts = {c.ref: c.text for c in out.cut_values}
    for row in back.to_pylist():
        for column in ("identity_pool_id", "identity_id", "dataset_name", "record_key", "record_value"):
            assert "\x00" not in (row[column] or "")
        if row["record_key"] is not None:
            assert (
                len(row["record_key"].encode()) <= 4096
                and stored_key(original_key(row["record_key"])) == row["record_key"]
            )
        if row["is_value_cut"]:
            stored = row["record_value"].encode()
            exact = full_texts[row["value_ref"]]
            assert len(stored) <= MAX and len(exact) == row["value_bytes"]
            text, is_exact = decoded_value(row["record_value"], True, row["value_bytes"])
            assert text.encode() == exact if is_exact else exact.startswith(text.encode())


BAD = bad_records()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(cognito_records(), min_size=1, max_size=20),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=len(BAD) - 1)), max_size=8
    ),
)
def test_bad_records_anywhere_are_rejected_and_only_them(
    records: list[dict[str, Any]], inserts: list[tuple[int, int]]
) -> None:
    # GIVEN valid records with bad ones inserted at random places
    data: list[bytes | None] = [dumps(r) for r in records]
    reasons: dict[int, str] = {}
    items: list[tuple[bytes, str | None]] = [(d, None) for d in data if d is not None]
    for where, which in inserts:
        reason, raw = BAD[which]
        items.insert(min(where, len(items)), (raw, reason))
    for position, (_, reason) in enumerate(items):
        if reason is not None:
            reasons[position] = reason
    raws = [raw for raw, _ in items]
    out = decode_records(KinesisRecords(raws, [str(i) for i in range(len(raws))], [0] * len(raws)), OPTIONS)
    # THEN exactly those are rejected, each with its reason; the rest land
    assert {int(r.sequence_number): r.reason for r in out.rejects} == reasons
    assert out.records_landed == len(records)
    assert out.records_read == out.records_landed + out.records_rejected


names = st.one_of(st.none(), st.sampled_from(["", "game_state", "other"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, names), max_size=30), st.integers(min_value=1, max_value=3))
def test_dataset_name_and_conflicts_are_those_of_kernels_over_every_record(
    pairs: list[tuple[str | None, str | None]], pieces: int
) -> None:
    # GIVEN both spellings of the dataset name as parsed columns (in one or more chunks)
    def column(values: list[str | None]) -> pa.ChunkedArray:
        step = max(1, -(-len(values) // pieces))
        parts = [values[i : i + step] for i in range(0, len(values), step)] or [[]]
        return pa.chunked_array([pa.array(p, pa.string()) for p in parts], pa.string())

    ds_a, ds_b = column([a for a, _ in pairs]), column([b for _, b in pairs])
    # WHEN only the records with datasetName are compared
    dataset, conflict = dataset_names(ds_a, ds_b)
    # THEN the names and conflicts are those of a coalesce and a comparison over every record
    assert dataset.to_pylist() == pc.coalesce(ds_a, ds_b).to_pylist()
    every = pc.fill_null(pc.and_(pc.is_valid(ds_b), pc.not_equal(ds_a, ds_b)), False)
    assert conflict.tolist() == every.to_pylist()


ascii_or_not = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=70)
shaped_id = st.from_regex(r"[A-Za-z0-9_-]{1,12}:[0-9a-f-]{1,50}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    pool=st.one_of(ascii_or_not, shaped_id, st.sampled_from(POOLS)),
    identity=st.one_of(ascii_or_not, shaped_id, st.sampled_from([p.split(":")[0] + ":0a-1" for p in POOLS])),
    dataset=st.one_of(ascii_or_not, st.from_regex(r"[A-Za-z0-9_.:-]{1,140}", fullmatch=True)),
)
def test_no_landed_id_fails_the_warehouses_byte_widths(pool: str, identity: str, dataset: str) -> None:
    # GIVEN a record with any identity pool id, identity id and dataset name (Cognito's shape or not)
    data = dumps(record([{"key": "k", "value": "v", "syncCount": 1, "lastModifiedDate": 1, "op": "replace"}],
                        pool=pool, identity=identity, dataset=dataset))  # fmt: skip
    # WHEN it is decoded
    out = decode_records(KinesisRecords([data], ["1"], [0]), OPTIONS)
    # THEN it lands only when its ids have Cognito's shape, its pool is configured and its identity is of the
    # pool's region, and then they fit the warehouse's varchar(64)/varchar(64)/varchar(128) in bytes
    fits = (
        pool in POOLS
        and re.fullmatch(r"[A-Za-z0-9_-]+:[0-9a-f-]+", identity, re.ASCII) is not None
        and len(identity) <= 55
        and identity.split(":")[0] == pool.split(":")[0]
        and re.fullmatch(r"[A-Za-z0-9_.:-]+", dataset, re.ASCII) is not None
        and len(dataset) <= 128
    )
    assert out.records_landed == int(fits) and out.records_rejected == int(not fits)
    for row in out.changes.to_pylist():
        assert len(row["identity_pool_id"].encode()) <= 55 and len(row["identity_id"].encode()) <= 55
        assert len(row["dataset_name"].encode()) <= 128
    if not fits:
        assert out.rejects[0].reason in ("invalid_identifier", "unknown_identity_pool", "identity_region_mismatch")


id_like = st.text(st.sampled_from("aZ9_-:0f-é€ \n"), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.lists(id_like, max_size=20), st.integers(min_value=0, max_value=3))
def test_the_shape_checks_are_the_documented_patterns(texts: list[str], offset: int) -> None:
    # GIVEN any strings (as a slice of a larger array, the way a chunk's dictionaries can be)
    strings = pa.array(["x"] * offset + texts, pa.string()).slice(offset)
    # WHEN the vectorized shape checks run  THEN they say what Cognito's patterns say (ASCII \w), with the lengths
    assert id_shaped(strings).tolist() == [re.fullmatch(ID_PATTERN, t) is not None and len(t) <= 55 for t in texts]
    assert dataset_shaped(strings).tolist() == [
        re.fullmatch(DATASET_PATTERN, t) is not None and len(t) <= 128 for t in texts
    ]

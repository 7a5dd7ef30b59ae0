"""Fuzzing the decoder (hypothesis): whatever bytes Kinesis hands over, ``decode_records`` never
raises, every record ends landed or quarantined with a known reason (read = landed + rejected),
quarantined records keep their exact bytes, and the outcome does not depend on how the batch is cut
into chunks and reader blocks.

Inputs: arbitrary bytes; valid records mutated byte by byte (flips, cuts, splices, insertions); and
valid records with a member replaced by any JSON value. (atheris is not used: hypothesis covers the
same ground here without a native build.)
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cognito_streams.core.decode import Decoded, DecodeOptions, KinesisRecords, decode_records, shape
from cognito_streams.core.landing_format import REJECT_REASONS
from tests.landing_records import SAMPLES, change, dumps, record

OPTIONS = DecodeOptions(
    stream_name="s",
    shard_id="shardId-000000000000",
    landed_file="s3://b/data.parquet",
    value_ref=lambda seq, sub, index: f"s3://b/values/{seq}/{sub}-{index}.txt",
    value_max_bytes=64,
)
#: The same decoding, cut into tiny chunks and reader blocks: many chunks, restarts, slow paths.
TINY = replace(OPTIONS, chunk_bytes=512, block_bytes=256, fast_block_bytes=256)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
READ_MEMBERS = ("identityPoolId", "identityId", "dataSetName", "operation", "payloadType", "syncCount",
                "lastModifiedDate", "kinesisSyncRecords")  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def valid_records(draw: st.DrawFn) -> bytes:
    keys = draw(st.lists(st.sampled_from(["level", "coins", "theme", "é", "k/1"]), max_size=4, unique=True))
    items = [
        change(k, draw(st.one_of(st.none(), st.text(max_size=80))), draw(st.integers(0, 99)), 1_424_801_824_343)
        for k in keys
    ]
    return dumps(record(items, sync_count=draw(st.integers(0, 99))))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.one_of(valid_records(), st.sampled_from(list(SAMPLES.values())))))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "truncate", "insert", "duplicate", "delete"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
        else:
            data[at : at + 1] = b""
    return bytes(data)


@st.composite
def with_odd_member(draw: st.DrawFn) -> tuple[bytes, str]:
    obj = orjson.loads(SAMPLES["inline-replace"])
    member = draw(st.sampled_from([*READ_MEMBERS, "kinesisSyncRecordsURL", "newMember"]))
    obj[member] = draw(json_values)
    # The standard library writes what orjson refuses to (integers beyond 64 bits): fair input too.
    return json.dumps(obj).encode(), member


def decode(data: list[bytes], options: DecodeOptions = OPTIONS) -> Decoded:
    n = len(data)
    return decode_records(KinesisRecords(data, [str(i) for i in range(n)], [1_700_000_000_000] * n), options)


def check_invariants(data: list[bytes], out: Decoded) -> None:
    """Every record accounted for once; rejects keep their bytes and a known reason."""
    assert out.records_read == len(data) == out.records_landed + out.records_rejected + len(out.pending)
    rejected = [int(r.sequence_number) for r in out.rejects]
    assert len(rejected) == len(set(rejected)), "a record was quarantined twice"
    for r in out.rejects:
        assert r.reason in REJECT_REASONS and r.detail
        assert r.raw == data[int(r.sequence_number)]
    landed_rows = set(out.changes.column("sequence_number").to_pylist()) if out.changes.num_rows else set()
    assert not landed_rows & {str(i) for i in rejected}, "a quarantined record has rows"


def outcome(out: Decoded) -> tuple[dict[str, str], list[Any]]:
    """What decoding decided, independent of chunking: reasons by record, and the rows."""
    rows = out.changes.select(["sequence_number", "record_index", "record_key", "record_value"]).to_pylist()
    return {r.sequence_number: r.reason for r in out.rejects}, sorted(
        rows, key=lambda r: (int(r["sequence_number"]), r["record_index"])
    )


@FUZZ
@given(st.lists(st.binary(max_size=600), min_size=1, max_size=12))
def test_arbitrary_bytes_never_crash_the_decoder(data: list[bytes]) -> None:
    out = decode(data)
    check_invariants(data, out)


@FUZZ
@given(st.lists(st.one_of(mutated(), valid_records()), min_size=1, max_size=10))
def test_mutated_records_are_decoded_or_quarantined_whatever_the_chunking(data: list[bytes]) -> None:
    out = decode(data)
    check_invariants(data, out)
    # Bytes that are not JSON at all can never land.
    for i, raw in enumerate(data):
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError:
            assert str(i) in {r.sequence_number for r in out.rejects}, raw
    # The decision does not depend on chunks and reader blocks (the slow paths agree with the fast one).
    tiny = decode(data, TINY)
    check_invariants(data, tiny)
    assert outcome(tiny) == outcome(out)


@FUZZ
@given(st.lists(with_odd_member(), min_size=1, max_size=8))
def test_any_json_in_any_member_is_decoded_or_quarantined(cases: list[tuple[bytes, str]]) -> None:
    data = [raw for raw, _ in cases]
    out = decode(data)
    check_invariants(data, out)
    rejected = {r.sequence_number for r in out.rejects}
    for i, (raw, member) in enumerate(cases):
        value = json.loads(raw)[member]
        if member == "newMember":
            assert str(i) not in rejected, "an unknown member must be ignored"
        elif (
            member in ("identityPoolId", "identityId", "dataSetName", "operation", "payloadType")
            and not isinstance(value, str)
        ) or (member in ("syncCount", "lastModifiedDate") and (isinstance(value, bool) or not isinstance(value, int))):
            assert str(i) in rejected, f"{member}={value!r} must be quarantined"
    assert outcome(decode(data, TINY)) == outcome(out)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated(), valid_records(), with_odd_member().map(lambda case: case[0])))
def test_ids_an_exact_check_hands_over_are_those_the_rejects_file_would_read(data: bytes) -> None:
    # The decoder takes a ShapeError's ids instead of parsing the record again when they were read.
    error = shape.check_shape(data)
    if error is not None and error.ids_read:
        got = {"identity_pool_id": error.identity_pool_id, "identity_id": error.identity_id}
        assert {**got, "dataset_name": error.dataset_name} == shape.identities(data)

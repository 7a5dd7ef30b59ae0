"""The schema-specific parser (pure core) against pyarrow's reader, and the decoder's fast path against
its pyarrow path."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cognito_streams.core.decode import READ_SCHEMA, DecodeOptions, KinesisRecords, decode_records, fastparse
from cognito_streams.core.decode.fallback import PARSE_OPTIONS
from tests.support.bad_input import GOOD, corpus

OPTIONS = DecodeOptions(
    stream_name="cognito-sync-stream",
    shard_id="shardId-000000000001",
    landed_file="s3://landing/data/x.parquet",
    value_ref=lambda seq, sub, index: f"s3://landing/values/{seq}/{sub}-{index}.txt",
)
OLD = replace(OPTIONS, fast_parse=False)


def fast(records: list[bytes]) -> tuple[pa.Table, np.ndarray]:
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    starts = np.zeros(len(records), dtype=np.int64)
    if len(records) > 1:
        starts[1:] = np.cumsum(lengths[:-1] + 1)
    parsed = fastparse.parse(bytearray(b"\n").join([*records, b""]), starts, lengths, READ_SCHEMA)
    assert parsed is not None
    return parsed


def pyarrow_rows(records: list[bytes]) -> pa.Table:
    return pj.read_json(pa.BufferReader(b"\n".join(records) + b"\n"), parse_options=PARSE_OPTIONS)


def assert_reads_like_pyarrow(records: list[bytes]) -> None:
    table, flagged = fast(records)
    assert not flagged.any(), [i for i in np.flatnonzero(flagged)]
    table.validate(full=True)
    assert table.schema == READ_SCHEMA
    expected = pyarrow_rows(records)
    assert table.equals(expected), (table.to_pylist(), expected.to_pylist())


# --- examples -------------------------------------------------------------------------------------

READ_ALIKE = [
    b"{}",
    b"{}     ",
    b'  {"syncCount" : -0 ,"lastModifiedDate":\t-123456789012345678}\r',
    b'{"kinesisSyncRecords":null}',
    b'{"kinesisSyncRecords":[]}',
    b'{"x":' + b"[" * 5000 + b"{}" + b"]" * 5000 + b',"syncCount":1}',  # RapidJSON reads any depth
    b'{"x":1' + b"0" * 5000 + b'.5e3,"syncCount":1}',  # and any number of digits
    b'{"kinesisSyncRecords":[null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null]}',
    b'{"kinesisSyncRecords":[null, {}, {"key":"k","value":null,"op":"replace","syncCount":3}]}',
    b'{"identityId":"\\u0000a\\ud83d\\ude00\\n\\"\\/\\\\\\b\\f\\r\\t\\u00e9\\u20ac"}',
    b'{"identityPoolId":"caf\xc3\xa9 \xf0\x9f\x98\x80"}',
    b'{"x":1,"x":"twice is fine when ignored","syncCount":999999999999999999}',
    b'{"x":[1,-2.5e-7,3E+99,0.0,1e-300,99e+298,1e308,2e308,1.5e309,1e-99999,1e00000000000000000000308,{"identityId":5,"a":[]}],"y":NaN,"z":-Infinity,"w":Inf,"v":{"q":[true,false,null,"s\\u00e9"]}}',
    b'{"kinesisSyncRecords":[{"key":"k","zz":{"key":1},"deviceLastModifiedDate":-7}],"datasetName":"d"}',
]

FLAGGED = [
    b'{"identityId":"a","identityId":"b"}',  # repeated read member
    b'{"kinesisSyncRecords":[{"key":"a","key":"b"}]}',
    b'{"syncCount":01}',  # leading zero
    b'{"syncCount":1.0}',
    b'{"syncCount":1e3}',
    b'{"syncCount":1234567890123456789}',  # 19 digits
    b'{"syncCount":true}',
    b'{"syncCount":"1"}',
    b'{"identityId":5}',
    b'{"identityId":false}',
    b'{"kinesisSyncRecords":{}}',
    b'{"kinesisSyncRecords":[1]}',
    b'{"kinesisSyncRecords":["a"]}',
    b'{"x":1e}',
    # pyarrow's "Number too big": a positive exponent above 308 plus the number's fraction digits
    b'{"x":1e400}',
    b'{"x":1e309}',
    b'{"x":0e309}',
    b'{"x":-1E+309}',
    b'{"x":1.5e310}',
    b'{"identityId":"a\tb"}',  # raw control character
    b'{"x":"\\ud800"}',  # lone surrogates
    b'{"x":"\\udc00"}',
    b'{"x":"\\q"}',
    b'{"syncCount":1} x',  # trailing content
    b'{"x":1}{"y":2}',
    b'{"ident\\u0069tyId":"a"}',  # a member name with an escape
    b'{"syncCount":1,}',
    b"[1]",
    b'"text"',
    b"{",
    b'{"x":tru}',
    b'{"x":nan}',
    b'{"a":\n1}',  # a raw newline: pyarrow splits the record there
]


@pytest.mark.parametrize("record", READ_ALIKE, ids=range(len(READ_ALIKE)))
def test_records_in_the_supported_shape_read_exactly_like_pyarrow(record: bytes) -> None:
    # GIVEN one record with whitespace, escapes, nulls, ignored members...  WHEN parsed
    # THEN the row equals pyarrow's, and it is not flagged
    assert_reads_like_pyarrow([record])


@pytest.mark.parametrize("record", FLAGGED, ids=range(len(FLAGGED)))
def test_records_outside_it_are_flagged_and_read_as_a_blanked_record(record: bytes) -> None:
    # GIVEN a good record, the odd one, and a good record
    good = b'{"identityId":"i","kinesisSyncRecords":[{"key":"k"}]}'
    table, flagged = fast([good, record, good])
    # THEN only the odd one is flagged, and its row is the all-null row of "{}"
    assert flagged.tolist() == [False, True, False]
    assert table.slice(1, 1).equals(pyarrow_rows([b"{}"]))
    assert table.slice(0, 1).equals(pyarrow_rows([good])) and table.slice(2, 1).equals(pyarrow_rows([good]))


NUMBERS = [
    "1e308",
    "1e309",
    "1E+309",
    "-1e309",
    "0e309",
    "0.0e309",
    "1.5e309",
    "1.5e310",
    "1.55e310",
    "10e308",
    "2e308",
    "12e307",
    "1e00000000000000000000308",
    "1e00000000000000000000309",
    "1e-99999",
    "-0.0e-0",
    "1" + "0" * 400,
    "1" + "0" * 400 + "e308",
    "NaN",
    "-Infinity",
    "-Inf",
]


@pytest.mark.parametrize("number", NUMBERS, ids=range(len(NUMBERS)))
def test_a_number_in_an_ignored_member_is_flagged_exactly_when_pyarrow_rejects_it(number: str) -> None:
    # GIVEN a number pyarrow may read (as a double) or reject as too big, in an ignored member
    record = b'{"x":' + number.encode() + b',"syncCount":1}'
    try:
        expected: pa.Table | None = pyarrow_rows([record])
    except pa.ArrowInvalid:
        expected = None
    # WHEN parsed  THEN flagged exactly when pyarrow rejects it, else read the same
    table, flagged = fast([record])
    assert bool(flagged[0]) == (expected is None)
    if expected is not None:
        assert table.equals(expected)


# --- hypothesis differential -----------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8") | st.sampled_from('/k\\"\n'), max_size=12)
ints = st.integers(-(10**18) + 1, 10**18 - 1)
json_scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | text
unknown_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "key", "syncCount"]), inner),
    max_leaves=6,
)
ITEM_STRINGS = ("key", "value", "op")
ITEM_INTS = ("syncCount", "lastModifiedDate", "deviceLastModifiedDate")
TOP_STRINGS = (
    "identityPoolId",
    "identityId",
    "dataSetName",
    "datasetName",
    "operation",
    "kinesisSyncRecordsURL",
    "payloadType",
)
TOP_INTS = ("syncCount", "lastModifiedDate")


class Members(list[tuple[str, Any]]):
    """An object's members, in the order drawn."""


@st.composite
def members(draw: st.DrawFn, strings: tuple[str, ...], integers: tuple[str, ...]) -> Members:
    out = Members()
    for name in strings:
        if draw(st.booleans()):
            out.append((name, draw(st.none() | text)))
    for name in integers:
        if draw(st.booleans()):
            out.append((name, draw(st.none() | ints)))
    # Ignored names, some a read name's prefix or extension (the parser compares read names in place).
    ignored = [
        "extra",
        "ttl",
        "Key",
        "nested",
        "ke",
        "keys",
        "o",
        "opx",
        "identity",
        "syncCount2",
        "kinesisSyncRecordsUR",
    ]
    for name in draw(st.lists(st.sampled_from(ignored), max_size=2, unique=True)):
        out.append((name, draw(unknown_values)))
    return out


@st.composite
def items(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return None
    return draw(members(ITEM_STRINGS, ITEM_INTS))


@st.composite
def records(draw: st.DrawFn) -> Members:
    out = draw(members(TOP_STRINGS, TOP_INTS))
    if draw(st.booleans()):
        out.append(("kinesisSyncRecords", draw(st.none() | st.lists(items(), max_size=4))))
    return out


WHITESPACE = st.sampled_from(["", " ", "\t", "\r", "  ", " \t "])


def _encode(draw: st.DrawFn, value: Any) -> str:
    # JSON text by hand: the members' order, the whitespace and the escapes are all drawn.
    ws = draw(WHITESPACE)
    if isinstance(value, Members):
        pairs = draw(st.permutations(value)) if value else []
        inner = ",".join(f"{ws}{json.dumps(k)}{draw(WHITESPACE)}:{ws}{_encode(draw, v)}{ws}" for k, v in pairs)
        return "{" + inner + "}"
    if value == []:
        return "[" + ws + "]"
    if isinstance(value, list):
        return "[" + ",".join(ws + _encode(draw, v) + ws for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{ws}{_encode(draw, v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        encoded = json.dumps(value, ensure_ascii=draw(st.booleans()))
        # Escapes json.dumps never writes: "\/" and a needless "\u" (neither "/" nor "k" occurs inside
        # an escape it writes).
        if draw(st.booleans()):
            encoded = encoded.replace("/", "\\/").replace("k", "\\u006b")
        return encoded
    return json.dumps(value)


@st.composite
def record_text(draw: st.DrawFn) -> bytes:
    return (draw(WHITESPACE) + _encode(draw, draw(records())) + draw(WHITESPACE)).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_text(), min_size=1, max_size=8))
def test_generated_records_read_exactly_like_pyarrow(batch: list[bytes]) -> None:
    # GIVEN records in the supported shape: members in any order, whitespace, escapes (\\u, surrogate
    # pairs), non-ASCII text, nulls, ignored nested members, empty and null arrays, int64s
    # WHEN parsed  THEN none is flagged and the table equals pyarrow's
    assert_reads_like_pyarrow(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(record_text(), min_size=1, max_size=4), st.data())
def test_a_damaged_record_is_flagged_or_read_like_pyarrow(batch: list[bytes], data: st.DataObject) -> None:
    # GIVEN generated records, one of them damaged (bytes cut, inserted or changed)
    index = data.draw(st.integers(0, len(batch) - 1))
    raw = bytearray(batch[index])
    at = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.sampled_from([b"", b",", b'"', b"\\", b"}", b"]", b"1", b"-", b".5", b"e", b"nul", b"\x01"]))
    raw[at : at + data.draw(st.integers(0, 3))] = junk
    batch[index] = bytes(raw).replace(b"\n", b" ")
    table, flagged = fast(batch)
    # THEN each record is flagged, or pyarrow reads it to the same row
    for i, record in enumerate(batch):
        if flagged[i]:
            continue
        try:
            expected = pyarrow_rows([record])
        except pa.ArrowInvalid:
            pytest.fail(f"record {i} is not flagged but pyarrow cannot read it")
        assert expected.num_rows == 1 and table.slice(i, 1).equals(expected)


# --- the decoder's fast path against its pyarrow path ----------------------------------------------


def kinesis(data: list[bytes]) -> KinesisRecords:
    return KinesisRecords(
        data=list(data),
        sequence_numbers=[str(100 + i) for i in range(len(data))],
        arrived_at_ms=[1_700_000_000_000 + i for i in range(len(data))],
    )


def assert_same_outcome(data: list[bytes], options: DecodeOptions) -> None:
    new = decode_records(kinesis(data), options)
    old = decode_records(kinesis(data), replace(options, fast_parse=False))
    assert new.changes.equals(old.changes)
    assert [(r.sequence_number, r.sub_sequence_number, r.reason, r.detail, r.raw) for r in new.rejects] == [
        (r.sequence_number, r.sub_sequence_number, r.reason, r.detail, r.raw) for r in old.rejects
    ]
    assert new.pending == old.pending
    assert new.cut_values == old.cut_values
    assert (new.records_read, new.records_landed, new.records_rejected) == (
        old.records_read,
        old.records_landed,
        old.records_rejected,
    )


def test_the_bad_input_corpus_decodes_the_same_on_both_paths() -> None:
    # GIVEN every case of the bad-input corpus, between good records, in small chunks and in one
    data: list[bytes] = []
    for case in corpus():
        data += [case.raw, GOOD]
    # WHEN decoded on the fast path and on the pyarrow path  THEN the same rows, rejects and counts
    assert_same_outcome(data, replace(OPTIONS, chunk_bytes=64 * 1024))
    assert_same_outcome(data, OPTIONS)


def test_the_benchmark_records_decode_the_same_on_both_paths() -> None:
    # GIVEN the benchmark's records (2 % bad of every kind) in several chunks
    from bench.bench_decode import _records

    data, _ = _records(6_000)
    # WHEN decoded on both paths  THEN the same outcome
    assert_same_outcome(data, replace(OPTIONS, chunk_bytes=512 * 1024))


def test_a_flagged_record_the_exact_check_accepts_sends_its_chunk_to_the_pyarrow_path() -> None:
    # GIVEN a record the fast parser cannot read (a member name with an escape) that is valid
    data = [GOOD.replace(b'"identityId"', b'"ident\\u0069tyId"')] * 3
    # WHEN decoded  THEN it lands exactly as on the pyarrow path
    assert_same_outcome(data, OPTIONS)
    out = decode_records(kinesis(data), OPTIONS)
    assert out.records_landed == 3 and not out.rejects


def test_a_record_over_several_lines_is_compacted_on_the_fast_path_too() -> None:
    # GIVEN a valid record over several lines and one that is not valid, between good records
    data = [GOOD, GOOD.replace(b", ", b",\n"), GOOD, GOOD + b"\n" + GOOD, GOOD]
    # WHEN decoded  THEN the same outcome as the pyarrow path: the first lands, the second is rejected
    assert_same_outcome(data, OPTIONS)
    out = decode_records(kinesis(data), OPTIONS)
    assert out.records_landed == 4 and [r.reason for r in out.rejects] == ["invalid_json"]


def test_the_parser_reads_the_members_the_rules_name() -> None:
    # GIVEN the rules' members (rules.py states them once; the parser compiles them in as constants)
    from cognito_streams.core.decode import rules

    # THEN the parser's table is READ_SCHEMA, whose members are exactly the rules' own, typed as they say
    table, _ = fast([GOOD])
    assert table.schema.names == [*rules.TOP_STRING_FIELDS, *rules.TOP_INT_FIELDS, rules.RECORDS_FIELD]
    assert table.schema.field(rules.RECORDS_FIELD).type.value_type.names == list(rules.ITEM_FIELDS)


def test_machine_code_compiled_for_other_members_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the parser's machine code, compiled (or loaded from numba's cache) for the members it reads
    fast([GOOD])
    # WHEN the members the module reads differ from those compiled in (rules.py changed and fastparse.py did
    # not: numba keys its cache by fastparse.py alone, and would load the old code)
    monkeypatch.setattr(fastparse, "_LAYOUT_ID", fastparse._LAYOUT_ID + 1)
    # THEN parsing refuses, saying what to do, instead of reading the old members
    with pytest.raises(RuntimeError, match=r"delete core/decode/__pycache__/fastparse"):
        fast([GOOD])

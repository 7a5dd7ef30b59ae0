"""The decoder (pure core): Cognito Streams records in, changes rows / rejects / pending S3Url out."""

from __future__ import annotations

import base64
import itertools
from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from cognito_streams.core.decode import DECODED_SCHEMA, DecodeOptions, KinesisRecords, decode_records, fallback
from cognito_streams.core.decode import chunk as chunk_module
from cognito_streams.core.decode import decoder as decoder_module
from cognito_streams.core.landing_format import CHANGES_SCHEMA, REJECT_REASONS
from tests.landing_records import SAMPLES, bad_records, change, dumps, record, seed_records

OPTIONS = DecodeOptions(
    stream_name="cognito-sync-stream",
    shard_id="shardId-000000000001",
    landed_file="s3://landing/data/x.parquet",
    value_ref=lambda seq, sub, index: f"s3://landing/values/{seq}/{sub}-{index}.txt",
)


def batch(data: list[bytes], first_seq: int = 100) -> KinesisRecords:
    return KinesisRecords(
        data=list(data),
        sequence_numbers=[str(first_seq + i) for i in range(len(data))],
        arrived_at_ms=[1_700_000_000_000 + i for i in range(len(data))],
    )


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def test_inline_replace_sample_gives_one_row_per_change_with_lineage() -> None:
    # GIVEN the documented inline-replace record  WHEN decoded
    out = decode_records(batch([SAMPLES["inline-replace"]]), OPTIONS)
    # THEN two rows, one per key, with the record's ids, versions and Kinesis coordinates
    assert out.records_read == out.records_landed == 1 and not out.rejects and not out.pending
    assert out.changes.schema == DECODED_SCHEMA and out.changes.cast(CHANGES_SCHEMA).schema == CHANGES_SCHEMA
    got = rows(out.changes)
    assert [(r["record_key"], r["record_value"], r["op"], r["sync_count"]) for r in got] == [
        ("level", "12", "replace", 7),
        ("coins", "4500", "replace", 7),
    ]
    first = got[0]
    assert first["identity_pool_id"] == "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
    assert first["identity_id"] == "us-east-1:7d3c9b1a-2e4f-4c5d-8a6b-0c1d2e3f4a5b"
    assert first["dataset_name"] == "game_state"
    assert first["last_modified_at"].timestamp() * 1000 == 1424801824343
    assert first["device_last_modified_at"].timestamp() * 1000 == 1424801824101
    assert first["event_sync_count"] == 7 and first["payload_type"] == "Inline"
    assert (first["shard_id"], first["sequence_number"], first["sub_sequence_number"]) == (
        "shardId-000000000001",
        "100",
        0,
    )
    assert [r["record_index"] for r in got] == [0, 1]
    assert first["value_bytes"] == 2 and first["is_value_cut"] is False and first["value_ref"] is None
    assert first["landed_file"] == OPTIONS.landed_file
    assert first["arrived_at"].timestamp() * 1000 == 1_700_000_000_000


def test_remove_sample_has_no_value_and_dataset_remove_gives_one_dataset_row() -> None:
    # GIVEN a key removal and a dataset deletion (operation remove, no records)
    out = decode_records(batch([SAMPLES["inline-remove"], SAMPLES["dataset-remove"]]), OPTIONS)
    got = {r["op"]: r for r in rows(out.changes)}
    # THEN the removal has no value, and the dataset deletion is one dataset_remove row at the event's date
    assert got["remove"]["record_key"] == "coins" and got["remove"]["record_value"] is None
    assert got["remove"]["value_bytes"] is None
    dataset_remove = got["dataset_remove"]
    assert dataset_remove["record_key"] is None and dataset_remove["dataset_name"] == "app_prefs"
    assert dataset_remove["sync_count"] == 4 and dataset_remove["last_modified_at"].timestamp() * 1000 == 1424803000000
    assert dataset_remove["record_index"] == 0 and out.records_landed == 2


def test_remove_change_drops_a_value_cognito_sent_with_it() -> None:
    data = dumps(record([change("k", "stale", 3, 1_000, op="remove")]))
    (row,) = rows(decode_records(batch([data]), OPTIONS).changes)
    assert row["op"] == "remove" and row["record_value"] is None


def test_both_dataset_name_spellings_are_accepted() -> None:
    a = dumps(record([change("k", "v", 1, 1_000)], dataset="alpha", dataset_field="dataSetName"))
    b = dumps(record([change("k", "v", 1, 1_000)], dataset="beta", dataset_field="datasetName"))
    out = decode_records(batch([a, b]), OPTIONS)
    assert [r["dataset_name"] for r in rows(out.changes)] == ["alpha", "beta"]


def test_s3url_record_is_pending_and_decided_by_payload_type_not_size() -> None:
    # GIVEN a small S3Url record and a large inline one
    big_inline = dumps(record([change("k", "x" * 900_000, 1, 1_000)]))
    out = decode_records(batch([SAMPLES["s3url"], big_inline]), OPTIONS)
    # THEN the S3Url one waits for its payload, the inline one lands whatever its size
    assert [p.sequence_number for p in out.pending] == ["100"]
    assert out.pending[0].url.startswith("https://cognito-sync-streams.s3.amazonaws.com/")
    assert out.records_landed == 1 and out.records_read == 2 and out.changes.num_rows == 1


def test_resolved_s3url_records_decode_like_inline_ones() -> None:
    header = orjson.loads(SAMPLES["s3url"])
    header["kinesisSyncRecords"] = orjson.loads(SAMPLES["s3url-body"])
    out = decode_records(batch([orjson.dumps(header)]), replace(OPTIONS, resolved_s3url=True))
    assert [(r["record_key"], r["payload_type"]) for r in rows(out.changes)] == [
        ("theme", "S3Url"),
        ("layout", "S3Url"),
    ]


@pytest.mark.parametrize(("reason", "raw"), bad_records(), ids=[f"{r}-{i}" for i, (r, _) in enumerate(bad_records())])
def test_every_bad_input_is_quarantined_with_its_reason_and_the_others_land(reason: str, raw: bytes) -> None:
    # GIVEN a bad record between two good ones
    good = SAMPLES["inline-replace"]
    out = decode_records(batch([good, raw, good]), OPTIONS)
    # THEN it alone is rejected, with the reason, its raw bytes and coordinates; read = landed + rejected
    assert reason in REJECT_REASONS
    assert [(r.reason, r.sequence_number, r.raw) for r in out.rejects] == [(reason, "101", raw)]
    assert out.rejects[0].detail and "4500" not in out.rejects[0].detail
    assert out.records_read == 3 == out.records_landed + out.records_rejected
    assert out.changes.num_rows == 4


def test_all_bad_inputs_together_with_good_ones_in_small_blocks() -> None:
    # GIVEN every bad kind mixed into many good records, parsed in tiny blocks (many restarts)
    bad = bad_records()
    good = seed_records(300, seed=3)
    data: list[bytes] = []
    expected: dict[int, str] = {}
    for i, item in enumerate(good):
        data.append(item)
        if i % 12 == 5 and bad:
            reason, raw = bad.pop()
            expected[len(data)] = reason
            data.append(raw)
    options = replace(OPTIONS, block_bytes=4096, chunk_bytes=64 * 1024)
    out = decode_records(batch(data, first_seq=0), options)
    # THEN exactly the bad ones are rejected, with the right reasons, and the rest all land
    assert {int(r.sequence_number): r.reason for r in out.rejects} == expected
    assert out.records_landed == len(good)
    reference = decode_records(batch(good, first_seq=0), OPTIONS)
    assert out.changes.num_rows == reference.changes.num_rows


def test_a_few_bad_records_do_not_send_the_batch_to_the_slow_path() -> None:
    # GIVEN 2 000 records with 1 % bad of the kinds the first screen sees
    data = seed_records(2_000, seed=5)
    for i in range(0, 2_000, 100):
        data[i] = data[i][: len(data[i]) // 2]  # truncated
    out = decode_records(batch(data), OPTIONS)
    # THEN only those are checked one by one, and the parser never restarts
    assert out.records_rejected == 20 and out.records_checked_slowly == 20 and out.parser_restarts == 0


def test_records_that_break_the_parser_cost_restarts_then_the_regex_screen_takes_over() -> None:
    # GIVEN many records with a string where an integer is read (they pass the first screen), on the
    # pyarrow path (the fast parser flags them all at once: no restarts)
    data = seed_records(3_000, seed=9)
    for i in range(0, 3_000, 30):
        data[i] = data[i].replace(b'"syncCount":', b'"syncCount":"1","x":', 1)
    out = decode_records(batch(data), replace(OPTIONS, block_bytes=64 * 1024, fast_parse=False))
    # THEN all are quarantined as bad_field_type, with few parser restarts (the RE2 screen finds the rest)
    assert out.records_rejected == 100 and {r.reason for r in out.rejects} == {"bad_field_type"}
    assert out.parser_restarts < 20
    assert out.records_landed == 2_900


def test_repeated_members_are_screened_once_they_cost_restarts() -> None:
    # GIVEN many records with a member repeated right after its value, at the top and in an element, on
    # the pyarrow path
    data = seed_records(3_000, seed=13)
    for i in range(0, 3_000, 30):
        data[i] = data[i].replace(b'"dataSetName":', b'"dataSetName":"x","dataSetName":', 1)
    for i in range(15, 3_000, 30):
        data[i] = data[i].replace(b'"key":', b'"key":"x","key":', 1)
    out = decode_records(batch(data), replace(OPTIONS, block_bytes=64 * 1024, fast_parse=False))
    # THEN all are quarantined as duplicate_keys, and the screens spare most of the restarts
    assert out.records_rejected == 200 and {r.reason for r in out.rejects} == {"duplicate_keys"}
    assert out.parser_restarts < 30
    assert out.records_landed == 2_800


def test_the_screens_only_save_time_the_outcome_is_the_same_without_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a batch with every bad kind, decoded on the pyarrow path with the screens and with screens
    # that never turn on
    data = seed_records(400, seed=17)
    for i, (_, raw) in enumerate(bad_records()):
        data.insert(7 + i * 15, raw)
    screened = decode_records(batch(data), replace(OPTIONS, block_bytes=8_192, chunk_bytes=100_000, fast_parse=False))
    monkeypatch.setattr(fallback, "SCREEN_MIN_RESTARTS", 10**9)
    unscreened = decode_records(batch(data), replace(OPTIONS, block_bytes=8_192, chunk_bytes=100_000, fast_parse=False))
    # THEN the same rows and the same rejects, with more restarts without the screens
    assert screened.changes.equals(unscreened.changes)
    assert [(r.sequence_number, r.reason, r.detail) for r in screened.rejects] == [
        (r.sequence_number, r.reason, r.detail) for r in unscreened.rejects
    ]
    assert unscreened.parser_restarts >= screened.parser_restarts


def test_rejects_come_in_stream_order_however_the_batch_is_chunked() -> None:
    # GIVEN records rejected by the vectorized checks and by the exact check, interleaved
    data = seed_records(200, seed=19)
    for i, (_, raw) in enumerate(bad_records() * 2):
        data.insert(3 + i * 4, raw)
    whole = decode_records(batch(data), OPTIONS)
    pieces = decode_records(batch(data), replace(OPTIONS, chunk_bytes=20_000, block_bytes=4_096))
    # THEN the rejects are in stream order, the same whatever the chunks
    order = [int(r.sequence_number) for r in whole.rejects]
    assert order == sorted(order) and len(order) == 2 * len(bad_records())
    assert [(r.sequence_number, r.reason, r.detail) for r in whole.rejects] == [
        (r.sequence_number, r.reason, r.detail) for r in pieces.rejects
    ]


def test_a_conversion_error_near_a_record_larger_than_the_block_gets_its_exact_reason() -> None:
    # GIVEN a record larger than the reader's block (the block grows to hold it), and after it a record
    # whose lastModifiedDate has a fraction (the reader fails without naming a row)
    big = dumps(record([change(f"k{i}", "v" * 40, 1, 1_000) for i in range(300)]))
    fraction = SAMPLES["inline-replace"].replace(
        b'"lastModifiedDate": 1424801824343, "kinesis', b'"lastModifiedDate": 1.5, "kinesis'
    )
    assert fraction != SAMPLES["inline-replace"]
    data = [big, *seed_records(40, seed=23), fraction, *seed_records(5, seed=29)]
    out = decode_records(batch(data), replace(OPTIONS, block_bytes=2_048, chunk_bytes=1_000_000))
    # THEN it is quarantined as bad_field_type, as when alone, not as an unexplained reader failure
    (reject,) = out.rejects
    assert reject.reason == "bad_field_type" and "lastModifiedDate" in reject.detail
    assert out.records_landed == len(data) - 1


def test_a_pretty_printed_record_still_lands() -> None:
    pretty = orjson.dumps(orjson.loads(SAMPLES["inline-replace"]), option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty
    out = decode_records(batch([SAMPLES["inline-remove"], pretty, SAMPLES["inline-remove"]]), OPTIONS)
    assert out.records_landed == 3 and out.changes.num_rows == 4


def test_two_documents_on_one_line_are_rejected_not_split() -> None:
    two = SAMPLES["inline-remove"] + b" " + SAMPLES["inline-remove"]
    out = decode_records(batch([SAMPLES["inline-replace"], two]), OPTIONS)
    assert [r.reason for r in out.rejects] == ["invalid_json"] and out.records_landed == 1


def test_empty_and_whitespace_records_are_rejected() -> None:
    out = decode_records(batch([b"", b" ", b"{", SAMPLES["inline-remove"]]), OPTIONS)
    assert [r.reason for r in out.rejects] == ["invalid_json"] * 3 and out.records_landed == 1


def test_long_values_are_cut_at_a_character_boundary_flagged_and_kept_whole() -> None:
    # GIVEN a value of 70 000 bytes whose byte 65 535 falls inside a 3-byte character
    value = "a" * 65_534 + "€" * 2000
    data = dumps(record([change("big", value, 2, 1_000), change("small", "ok", 2, 1_000)]))
    out = decode_records(batch([data]), OPTIONS)
    big, small = rows(out.changes)
    # THEN the row holds whole characters within the limit, is flagged, and points at the full text
    assert big["is_value_cut"] is True and big["value_bytes"] == len(value.encode())
    assert big["record_value"] == "a" * 65_534 and len(big["record_value"].encode()) <= 65_535
    assert big["value_ref"] == "s3://landing/values/100/0-0.txt"
    assert [(c.ref, c.text) for c in out.cut_values] == [(big["value_ref"], value.encode())]
    assert small["is_value_cut"] is False and small["value_ref"] is None


def test_kpl_aggregated_records_are_deaggregated_with_sub_sequence_numbers() -> None:
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    users = [dumps(record([change(f"k{i}", str(i), 1, 1_000)])) for i in range(3)]
    for i, user in enumerate(users):
        aggregator.add_user_record(f"pk{i}", user)
    _, _, aggregate = aggregator.clear_and_get().get_contents()
    out = decode_records(batch([aggregate, SAMPLES["inline-remove"]]), OPTIONS)
    got = rows(out.changes)
    assert [(r["sequence_number"], r["sub_sequence_number"], r["record_key"]) for r in got[:3]] == [
        ("100", 0, "k0"),
        ("100", 1, "k1"),
        ("100", 2, "k2"),
    ]
    assert out.records_read == 4 == out.records_landed


def test_a_corrupt_kpl_aggregate_is_quarantined() -> None:
    from aws_kinesis_agg.aggregator import RecordAggregator

    aggregator = RecordAggregator()
    aggregator.add_user_record("pk", dumps(record([change("k", "v", 1, 1_000)])))
    _, _, aggregate = aggregator.clear_and_get().get_contents()
    corrupt = aggregate[:-1] + bytes([aggregate[-1] ^ 0xFF])  # the MD5 digest no longer matches
    out = decode_records(batch([corrupt]), OPTIONS)
    assert [r.reason for r in out.rejects] == ["kpl_bad_aggregate"] and out.records_read == 1


def test_a_corrupt_kpl_aggregate_takes_its_place_in_stream_order_among_the_rejects() -> None:
    from aws_kinesis_agg.aggregator import RecordAggregator

    # GIVEN bad records, then a corrupt aggregate, then a good aggregate and more bad records
    aggregator = RecordAggregator()
    for i in range(3):
        aggregator.add_user_record(f"pk{i}", dumps(record([change(f"k{i}", "v", 1, 1_000)])))
    _, _, good_aggregate = aggregator.clear_and_get().get_contents()
    corrupt = good_aggregate[:-1] + bytes([good_aggregate[-1] ^ 0xFF])
    data = seed_records(60, seed=29)
    data[10], data[20], data[30], data[40], data[50] = b"x", b"[1]", corrupt, good_aggregate, b"{"
    for options in (OPTIONS, replace(OPTIONS, chunk_bytes=5_000, block_bytes=4_096)):
        out = decode_records(batch(data, first_seq=0), options)
        # THEN the rejects are in stream order, whatever the chunks
        assert [(int(r.sequence_number), r.reason) for r in out.rejects] == [
            (10, "invalid_json"),
            (20, "not_an_object"),
            (30, "kpl_bad_aggregate"),
            (50, "invalid_json"),
        ]
        assert out.records_read == 62 == out.records_landed + out.records_rejected


def test_chunking_does_not_change_the_result() -> None:
    data = seed_records(500, seed=11)
    whole = decode_records(batch(data), OPTIONS)
    pieces = decode_records(batch(data), replace(OPTIONS, chunk_bytes=20_000, block_bytes=8_192))
    # The same rows, types and values: each chunk's record-level columns carry their own dictionary
    # (DECODED_SCHEMA), so the tables are compared as the contract's strings (what the file holds).
    assert whole.changes.cast(CHANGES_SCHEMA).equals(pieces.changes.cast(CHANGES_SCHEMA))
    assert whole.changes.num_rows == pieces.changes.num_rows > 0


def test_rejects_never_carry_values_in_details() -> None:
    secret = "SECRET-VALUE-123"
    bad = [
        dumps(record([change("k", secret, 1, 1_000, op="upsert")])),
        dumps(record([change("k", secret, 1, 1_000)]))[:-3],
        dumps(record([{**change("k", secret, 1, 1_000), "syncCount": secret}])),
    ]
    out = decode_records(batch(bad), OPTIONS)
    assert len(out.rejects) == 3
    assert all(secret not in r.detail for r in out.rejects)


def test_mismatched_input_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        KinesisRecords([b"{}"], ["1", "2"], [1])


def test_safe_message_drops_the_value_a_conversion_error_quotes() -> None:
    message = "Failed to convert JSON to int64, couldn't parse:SECRET"
    assert "SECRET" not in fallback._safe_message(message)


def test_raw_bytes_are_kept_exactly() -> None:
    raw = b"\x00\x01binary\xff"
    out = decode_records(batch([raw]), OPTIONS)
    assert out.rejects[0].raw == raw and base64.b64decode(base64.b64encode(raw)) == raw


def test_a_key_repeated_far_apart_in_a_large_record_is_found() -> None:
    # GIVEN a sync of 12 keys where the last repeats the first (beyond the pairwise window)
    items = [change(f"k{i}", str(i), 1, 1_000) for i in range(11)] + [change("k0", "again", 1, 1_000)]
    out = decode_records(batch([dumps(record(items)), SAMPLES["inline-remove"]]), OPTIONS)
    assert [(r.reason, r.detail) for r in out.rejects] == [
        ("duplicate_keys", "kinesisSyncRecords[11].key repeats the key of an earlier element of the same record")
    ]
    assert out.records_landed == 1


def test_the_sink_gets_every_row_in_stream_order_while_decoding_goes_on() -> None:
    # GIVEN a batch of several chunks with bad records among them, decoded on the worker threads
    data = seed_records(1_200, seed=23)
    for i, (_, raw) in enumerate(bad_records()):
        data.insert(40 + i * 41, raw)
    options = replace(OPTIONS, chunk_bytes=60_000, block_bytes=8_192)
    received: list[pa.Table] = []
    # WHEN a sink is given
    out = decode_records(batch(data), options, sink=received.append)
    # THEN it got one non-empty table per chunk with rows, in order: together exactly the changes
    assert len(received) > 4 and all(table.num_rows for table in received)
    assert pa.concat_tables(received).equals(out.changes)
    # and the sink changes nothing of the outcome
    plain = decode_records(batch(data), options)
    assert plain.changes.equals(out.changes) and plain.rejects == out.rejects


def test_a_batch_without_changes_calls_no_sink() -> None:
    received: list[pa.Table] = []
    out = decode_records(batch([b"not json", SAMPLES["inline-replace"][:20]]), OPTIONS, sink=received.append)
    assert out.changes.num_rows == 0 and out.records_rejected == 2 and received == []


def test_a_batch_ends_in_smaller_chunks_so_that_both_threads_finish_together() -> None:
    # GIVEN 10,000 records of 1,000 bytes (about 10 MB) cut into chunks of about 1 MB (each up to the
    # record that crosses it)
    lengths = np.full(10_000, 999, dtype=np.int64)
    bounds = list(decoder_module._chunks(lengths, 2**20))
    sizes = [int(lengths[lo:hi].sum() + (hi - lo)) for lo, hi in bounds]
    # THEN they cover every record once, in order
    assert bounds[0][0] == 0 and bounds[-1][1] == 10_000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    # and the last ones halve what remains, down to an eighth of a chunk, with no sliver at the end
    assert sizes[:6] == [sizes[0]] * 6 and 2**20 <= sizes[0] <= 2**20 + 1_000
    assert sizes[-4] < sizes[-5] and sizes[-3] < sizes[-4] and max(sizes[-2:]) <= 2**20 // 4 + 1_000
    assert min(sizes) >= 2**20 // 8 - 1_000
    # and the plan that starts the first chunk before reading the other lengths gives the same chunks
    data = [b"x" * 999] * 10_000
    plan, several = decoder_module._chunk_plan(data, 2**20)
    assert several and [(lo, hi) for lo, hi, _ in plan] == bounds
    small, several = decoder_module._chunk_plan(data[:50], 2**20)
    assert not several and [(lo, hi) for lo, hi, _ in small] == [(0, 50)]
    # and a batch smaller than one chunk is still split over both threads (unless under an eighth of one)
    assert len(list(decoder_module._chunks(np.full(400, 999, dtype=np.int64), 2**20))) == 2
    assert len(list(decoder_module._chunks(np.full(100, 999, dtype=np.int64), 2**20))) == 1


def test_every_record_with_invalid_utf8_in_a_chunk_is_found_one_validation_pass_each() -> None:
    # GIVEN a chunk of non-ASCII records where a few hold invalid UTF-8 (a lone continuation byte, a
    # truncated sequence, an encoded surrogate), two of them side by side and one last
    data = [dumps(record([change(f"k{i}", f"välue {i}", 1, 1_000)])) for i in range(300)]
    broken = {7: b"\x80", 8: b"\xe2\x82", 150: b"\xed\xa0\x80", 299: b"\xff"}
    for index, junk in broken.items():
        data[index] = data[index].replace("välue".encode(), junk)
    chunk = chunk_module.Chunk(data)
    # WHEN the records holding invalid UTF-8 are looked for
    found = chunk_module.invalid_utf8_records(chunk)
    # THEN exactly those are found, as validating groups of records and then single records finds them
    assert np.flatnonzero(found).tolist() == sorted(broken)
    strings = chunk_module.records_array(chunk).view(pa.large_string())
    assert np.flatnonzero(chunk_module.invalid_utf8_groups(chunk, strings, 0, 64)).tolist() == sorted(broken)
    # and a decode rejects each of them as invalid_utf8, in stream order
    out = decode_records(batch(data, first_seq=0), OPTIONS)
    assert [(int(r.sequence_number), r.reason) for r in out.rejects] == [(i, "invalid_utf8") for i in sorted(broken)]


def test_a_chunk_of_mostly_invalid_utf8_finds_every_bad_record_past_the_named_ones() -> None:
    # GIVEN a producer that sends Latin-1 instead of UTF-8: many more bad records in one chunk than are
    # found one validation call each, with a few good ones among them
    data = [dumps(record([change(f"k{i}", f"välue {i}", 1, 1_000)])) for i in range(400)]
    good = {0, 33, 34, 200, 399}
    for i in range(400):
        if i not in good:
            data[i] = data[i].replace("välue".encode(), b"v\xe4lue")
    assert len(data) - len(good) > chunk_module.UTF8_NAMED_MAX
    chunk = chunk_module.Chunk(data)
    # WHEN the records holding invalid UTF-8 are looked for
    found = chunk_module.invalid_utf8_records(chunk)
    # THEN every bad one is found (the first ones by name, the rest by groups) and no good one
    assert np.flatnonzero(~found).tolist() == sorted(good)
    # and a decode lands exactly the good ones
    out = decode_records(batch(data, first_seq=0), OPTIONS)
    assert out.records_rejected == 395 and {r.reason for r in out.rejects} == {"invalid_utf8"}
    assert out.records_landed == len(good)

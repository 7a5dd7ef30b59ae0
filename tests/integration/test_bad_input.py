"""Bad input, end to end: every malformed record of the corpus (tests/support/bad_input.py) is either
quarantined with the right reason, its raw bytes and Kinesis coordinates, or — for the few tolerated on
purpose — landed; the warehouse loads the lot without a hitch; nothing is dropped: read = landed +
rejected, per batch and per run."""

from __future__ import annotations

import base64
import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from cognito_streams.core.decode import DecodeOptions, KinesisRecords, decode_records
from cognito_streams.core.landing_format import REJECT_REASONS
from cognito_streams.landing import tasks
from cognito_streams.landing_zone import load as loader
from cognito_streams.settings import PipelineSettings, parse_settings
from local.procs import free_port
from tests.landing_records import POOL, SAMPLES, change, dumps, put_records, record, seed_records, with_records_pool
from tests.support.bad_input import AT, BadCase, corpus
from tests.support.warehouse import connect, drop_schema

OPTIONS = DecodeOptions(
    stream_name="s",
    shard_id="shardId-000000000000",
    landed_file="s3://b/data.parquet",
    value_ref=lambda seq, sub, index: f"s3://b/values/{seq}/{sub}-{index}.txt",
    value_max_bytes=65_535,
    identity_pool_ids=(POOL,),
    chunk_bytes=4_000,
    block_bytes=2_048,
)
CASES = corpus()


def decode(data: list[bytes]) -> Any:
    return decode_records(KinesisRecords(data, [str(i) for i in range(len(data))], [AT] * len(data)), OPTIONS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_input_alone_gets_its_fate(case: BadCase) -> None:
    # GIVEN one malformed record  WHEN it is decoded
    out = decode([case.raw])
    # THEN it is quarantined with its reason and its bytes, or (tolerated on purpose) it lands
    assert out.records_read == 1 == out.records_landed + out.records_rejected
    if case.reason is None:
        assert out.rejects == [] and out.changes.num_rows == case.rows
    else:
        (reject,) = out.rejects
        assert (reject.reason, reject.raw) == (case.reason, case.raw)
        assert case.detail in reject.detail
        assert out.changes.num_rows == 0


def test_the_whole_corpus_between_good_records_in_one_batch() -> None:
    # GIVEN every case, each between two good records, in small chunks (several parser restarts)
    good = seed_records(len(CASES) + 1, seed=90)
    data: list[bytes] = []
    expected: dict[int, str] = {}
    for i, case in enumerate(CASES):
        data.append(good[i])
        if case.reason is not None:
            expected[len(data)] = case.reason
        data.append(case.raw)
    data.append(good[-1])
    # WHEN the batch is decoded
    out = decode(data)
    # THEN exactly the bad ones are quarantined, each with its own reason, and everything is accounted for
    assert {int(r.sequence_number): r.reason for r in out.rejects} == expected
    assert out.records_read == len(data) == out.records_landed + out.records_rejected
    assert {r.reason for r in out.rejects} <= set(REJECT_REASONS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bad_first", [False, True], ids=["clean-batch", "after-a-bad-record"])
def test_a_record_larger_than_the_json_readers_block_decodes(bad_first: bool) -> None:
    """Found by this suite: a record over 1 MB (a resolved S3Url payload) broke the JSON reader's
    blocks, and the decoder looped forever blanking it."""
    large = dumps(record([change(f"slot{i}", "x" * 200, 3, AT) for i in range(10_000)]))
    assert len(large) > 2 * 2**20
    # GIVEN a 2 MB record, alone or after a record that sends the batch to the slow path
    data = [b"{broken", large] if bad_first else [large]
    # WHEN it is decoded  THEN it lands whole, in bounded time
    out = decode(data)
    assert out.records_landed == 1 and out.changes.num_rows == 10_000
    assert out.records_rejected == int(bad_first)


# -- end to end: Kinesis (moto) -> landing task -> S3 -> loading task -> PostgreSQL --------------------


@pytest.fixture
def landing(stack: Any, aws: Any) -> Iterator[PipelineSettings]:
    stream = f"bad-{uuid.uuid4().hex[:8]}"
    aws("kinesis").create_stream(StreamName=stream, ShardCount=1)
    closed_port = free_port()  # nothing listens there: an unreachable payload host, allowed on purpose
    base = json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
    settings = parse_settings(
        {
            **base,
            "identity_pool_ids": with_records_pool(base["identity_pool_ids"]),
            "stream_name": stream,
            "landing_prefix": f"tests/bad-input/{stream}",
            "warehouse_schema": f"bad_{uuid.uuid4().hex[:10]}",
            "batch_max_records": 40,
            "s3url_fetch_retries": 0,
            "s3url_fetch_timeout_seconds": 2,
            "s3url_max_bytes": 4 * 2**20,
            "s3url_allowed_hosts": [f"127.0.0.1:{closed_port}"],
        }
    )
    try:
        yield settings
    finally:
        drop_schema(settings.warehouse_schema)


def s3url_cases(aws: Any, settings: PipelineSettings) -> list[BadCase]:
    """Records whose payload is behind a URL: the URL or its body is what is wrong."""
    s3 = aws("s3")
    bucket = settings.landing_bucket
    prefix = f"{settings.landing_prefix}-payloads"
    allowed_closed = settings.s3url_allowed_hosts[0]

    def presigned(key: str, body: bytes | None) -> str:
        if body is not None:
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body, ContentType="application/json")
        return str(
            s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": f"{prefix}/{key}"}, ExpiresIn=600)
        )

    def with_url(url: str) -> bytes:
        return dumps(record(None, url=url, dataset="big_save"))

    good_body = orjson.dumps([change("save", "x" * 100, 3, AT)])
    # A whole saved game behind one URL: 3 MB of JSON, larger than the JSON reader's blocks.
    large_body = orjson.dumps([change(f"slot{i}", "x" * 200, 3, AT) for i in range(10_000)])
    nul_body = (
        b'[{"key": "save", "value": "x\\u0000y", "syncCount": 3, "lastModifiedDate": 1424801824343, "op": "replace"}]'
    )
    deep_body = b"[" * 5000 + b"]" * 5000
    return [
        BadCase("s3url-good", with_url(presigned("good.json", good_body)), None, rows=1),
        BadCase(
            "s3url-foreign-host",
            with_url("https://attacker.example.com/payload.json"),
            "s3url_forbidden",
            "not an S3 endpoint",
        ),
        BadCase("s3url-file-scheme", with_url("file:///etc/passwd"), "s3url_forbidden"),
        BadCase("s3url-missing-object", with_url(presigned("missing.json", None)), "s3url_not_found"),
        BadCase("s3url-not-json", with_url(presigned("garbage.json", b"<html>not json</html>")), "s3url_bad_body"),
        BadCase("s3url-deep-nesting", with_url(presigned("deep.json", deep_body)), "s3url_bad_body"),
        BadCase("s3url-several-mb", with_url(presigned("large.json", large_body)), None, rows=10_000),
        BadCase(
            "s3url-too-large",
            with_url(presigned("huge.json", b"[" + b" " * (5 * 2**20) + b"]")),
            "s3url_bad_body",
            "s3url_max_bytes",
        ),
        BadCase("s3url-nul-in-value", with_url(presigned("nul.json", nul_body)), None, rows=1),
        BadCase("s3url-unreachable", with_url(f"http://{allowed_closed}/payload.json"), "s3url_unreachable"),
    ]


def landed_rows(s3: Any, settings: PipelineSettings) -> dict[str, int]:
    """Change rows per Kinesis sequence number in the landing zone's changes files."""
    counts: Counter[str] = Counter()
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.landing_bucket, Prefix=f"{settings.landing_prefix}/data/"
    )
    for page in pages:
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.landing_bucket, Key=item["Key"])["Body"].read()
            counts.update(pq.read_table(io.BytesIO(body), columns=["sequence_number"])["sequence_number"].to_pylist())
    return dict(counts)


def test_the_corpus_through_the_pipeline_is_quarantined_landed_and_loaded(landing: PipelineSettings, aws: Any) -> None:
    settings = landing
    cases = [*CASES, *s3url_cases(aws, settings)]
    # GIVEN every case on a Kinesis stream, with good records around them
    data = [SAMPLES["dataset-remove"], *[c.raw for c in cases], *seed_records(5, seed=91)]
    put = put_records(aws("kinesis"), settings.stream_name, data)
    fate = {p["SequenceNumber"]: c for p, c in zip(put[1:], cases, strict=False)}
    # WHEN the landing task and the loading task run
    outcomes = [
        tasks.land(shard, "bad_input", "run-1", settings) for shard in tasks.plan({}, "bad_input", "run-1", settings)
    ]
    loader.ensure_schema(settings)
    loaded = loader.load_landing_zone(settings)
    loader.raise_for_failed(loaded, settings.warehouse_schema)  # as the DAG's check_failed_batches
    schema = settings.warehouse_schema
    with connect() as conn:
        rejected = {
            seq: (reason, detail, raw_ref)
            for seq, reason, detail, raw_ref in conn.execute(
                f"select sequence_number, reason, detail, raw_ref from {schema}.rejected_records"
            )
        }
        versions = conn.execute(f"select count(*) from {schema}.record_changes").fetchone()
    # (copies of one version are one row of record_changes; the landing zone keeps every copy)
    landed = landed_rows(aws("s3"), settings)
    # THEN each bad record is in rejected_records with its own reason and a detail, each tolerated one landed
    wrong = []
    for seq, case in fate.items():
        if case.reason is None:
            if landed.get(seq) != case.rows:
                wrong.append((case.name, "landed rows", landed.get(seq), rejected.get(seq)))
        elif seq not in rejected or rejected[seq][0] != case.reason or case.detail not in rejected[seq][1]:
            wrong.append((case.name, "rejected", rejected.get(seq), landed.get(seq)))
    assert not wrong, wrong
    # AND every record read is landed or rejected, and the load took everything without an error
    (outcome,) = outcomes
    expected_rejects = sum(1 for c in cases if c.reason is not None)
    assert outcome["records_read"] == len(data) == outcome["records_landed"] + outcome["records_rejected"]
    assert outcome["records_rejected"] == expected_rejects == loaded.rejects_inserted == len(rejected)
    assert versions is not None and versions[0] == loaded.merge.versions_inserted > 8000
    # AND the raw bytes behind each reject's raw_ref are exactly what Kinesis delivered
    s3 = aws("s3")
    for seq, case in fate.items():
        if case.reason is None:
            continue
        _, _, raw_ref = rejected[seq]
        url, line = raw_ref.split("#line=")
        bucket, key = url.removeprefix("s3://").split("/", 1)
        lines = s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
        entry = orjson.loads(lines[int(line) - 1])
        assert base64.b64decode(entry["raw_base64"]) == case.raw, case.name
        assert entry["sequence_number"] == seq and entry["reason"] == case.reason
    # AND no detail repeats a value or a presigned URL's signature (a host name is fine: it says where)
    for _, detail, _ in rejected.values():
        assert "X-Amz-Signature" not in detail and "xxxxxxxxxx" not in detail

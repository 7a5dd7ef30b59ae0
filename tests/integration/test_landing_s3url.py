"""``S3Url`` payloads against moto S3 presigned URLs and a local HTTP server that answers like S3 does
when moto cannot (moto 5.2.5 does not enforce presigned-URL expiry or signatures)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from local.procs import free_port
from tests.integration.test_landing import make_landing
from tests.landing_records import SAMPLES, change, dumps, put_records, record
from tests.support.http import QuietHandler, serving

pytestmark = pytest.mark.integration

# S3's own error documents for an expired presigned URL and for a bad signature.
EXPIRED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
    b"<Message>Request has expired</Message><X-Amz-Expires>1</X-Amz-Expires></Error>"
)
DENIED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
    b"<Message>The request signature we calculated does not match</Message></Error>"
)


class FakeS3(QuietHandler):
    """Answers like S3 for the cases moto cannot produce; /flaky fails once, then serves the body."""

    calls: dict[str, int] = {}  # noqa: RUF012 - shared by the server's handler instances on purpose

    def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler calls
        path = self.path.split("?", 1)[0]
        FakeS3.calls[path] = FakeS3.calls.get(path, 0) + 1
        if path == "/bucket/expired":
            self.send(403, EXPIRED)
        elif path == "/bucket/denied":
            self.send(403, DENIED)
        elif path == "/bucket/flaky" and FakeS3.calls[path] == 1:
            self.send(503, b"<Error><Code>SlowDown</Code></Error>")
        elif path == "/bucket/flaky":
            self.send(200, SAMPLES["s3url-body"])
        else:
            self.send(404, b"<Error><Code>NoSuchKey</Code></Error>")


@pytest.fixture
def fake_s3() -> Iterator[str]:
    with serving(FakeS3) as port:
        yield f"127.0.0.1:{port}"


def s3url_record(url: str, key: str = "k") -> bytes:
    return dumps(record(None, url=url, dataset=f"ds_{key}", at=1_424_802_000_000, sync_count=3))


def test_s3url_payloads_are_fetched_kept_decoded_or_quarantined_with_the_reason(
    stack: Any, aws: Any, fake_s3: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN payload objects in S3 and presigned URLs for them, valid or broken in every listed way
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    landing = make_landing(
        aws,
        s3url_allowed_hosts=[fake_s3, closed],
        s3url_fetch_retries=2,
        s3url_fetch_timeout_seconds=2,
    )
    s3 = aws("s3")
    bucket = f"payloads-{landing.stream}"
    s3.create_bucket(Bucket=bucket)
    wrapped = b'{"kinesisSyncRecords": [' + dumps(change("z", "zz", 5, 1_424_802_000_000)) + b"]}"
    for key, body in {
        "array": SAMPLES["s3url-body"],
        "object": wrapped,
        "html": b"<html><body>Service Unavailable</body></html>",
        "bad-record": b'[{"key": "a", "value": "1", "syncCount": "three", "lastModifiedDate": 1, "op": "replace"}]',
    }.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def presigned(key: str) -> str:
        return str(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600))

    cases = {
        "array": (presigned("array"), None),
        "object": (presigned("object"), None),
        "flaky": (f"http://{fake_s3}/bucket/flaky?X-Amz-Signature=secret1", None),
        "missing": (presigned("no-such-key"), "s3url_not_found"),
        "expired": (f"http://{fake_s3}/bucket/expired?X-Amz-Signature=secret2", "s3url_expired"),
        "denied": (f"http://{fake_s3}/bucket/denied?X-Amz-Signature=secret3", "s3url_forbidden"),
        "unreachable": (f"http://{closed}/bucket/x?X-Amz-Signature=secret4", "s3url_unreachable"),
        "html": (presigned("html"), "s3url_bad_body"),
        "bad-record": (presigned("bad-record"), "bad_field_type"),
        "not-s3": ("http://169.254.169.254/latest/meta-data?X-Amz-Signature=secret5", "s3url_forbidden"),
    }
    data = [s3url_record(url, key) for key, (url, _) in cases.items()]
    put = put_records(landing.kinesis, landing.stream, data)
    sequence = {key: p["SequenceNumber"] for key, p in zip(cases, put, strict=True)}
    # WHEN landed
    with caplog.at_level(logging.INFO):
        (outcome,) = landing.run()
    # THEN good payloads land as S3Url rows, each failure is quarantined with its reason, read = landed + rejected
    assert outcome.records_read == len(cases) == outcome.records_landed + outcome.records_rejected
    rejects = {r["sequence_number"]: r for r in landing.rejects().to_pylist()}
    for key, (_, reason) in cases.items():
        if reason is None:
            assert sequence[key] not in rejects, key
        else:
            assert rejects[sequence[key]]["reason"] == reason, (key, rejects[sequence[key]]["detail"])
    rows = landing.changes().to_pylist()
    assert {(r["sequence_number"], r["record_key"]) for r in rows} == {
        (sequence["array"], "theme"),
        (sequence["array"], "layout"),
        (sequence["object"], "z"),
        (sequence["flaky"], "theme"),
        (sequence["flaky"], "layout"),
    }
    assert {r["payload_type"] for r in rows} == {"S3Url"}
    assert FakeS3.calls["/bucket/flaky"] == 2  # retried once after the 503
    # and each fetched body is kept in the landing zone, since its URL will not work later
    layout = landing.ctx.layout
    shard = put[0]["ShardId"]
    for key in ("array", "object", "flaky", "html"):
        kept = landing.get(layout.payload_key(shard, sequence[key], 0))
        assert kept.startswith((b"[", b"{", b"<html>"))
    assert "kept at" in rejects[sequence["html"]]["detail"]
    # and no presigned URL (signature, credentials) appears in the logs or the rejects
    text = caplog.text + repr(rejects)
    for secret in (
        "secret1",
        "secret2",
        "secret3",
        "secret4",
        "secret5",
        "X-Amz-Signature",
        "Signature=",
        "AWSAccessKeyId",
    ):
        assert secret not in text
    # but the raw record (with its URL, as Kinesis delivered it) is kept for repair
    (descriptor,) = landing.descriptors()
    assert descriptor.rejects_raw is not None
    lines = landing.get(descriptor.rejects_raw.url).splitlines()
    assert len(lines) == 7 and all(orjson.loads(line)["raw_base64"] for line in lines)


def test_a_large_value_from_a_payload_is_cut_and_kept_whole(stack: Any, aws: Any) -> None:
    landing = make_landing(aws)
    s3 = aws("s3")
    bucket = f"payloads-{landing.stream}"
    s3.create_bucket(Bucket=bucket)
    value = "é" * 600_000  # 1.2 MB of UTF-8
    s3.put_object(Bucket=bucket, Key="big", Body=dumps([change("layout", value, 3, 1_424_802_000_000)]))
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "big"}, ExpiresIn=3600)
    put_records(landing.kinesis, landing.stream, [s3url_record(url)])
    landing.run()
    (row,) = landing.changes().to_pylist()
    assert row["is_value_cut"] and row["value_bytes"] == 1_200_000
    assert len(row["record_value"].encode()) <= 65_535 and value.startswith(row["record_value"])
    assert landing.get(row["value_ref"]).decode() == value
    (descriptor,) = landing.descriptors()
    assert descriptor.changes is not None
    assert pq.read_metadata(io.BytesIO(landing.get(descriptor.changes.url))).num_rows == 1

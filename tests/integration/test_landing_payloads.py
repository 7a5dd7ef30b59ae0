"""``S3Url`` payloads when a batch is landed again, and when they are large (issue 18, items 3 and 5).

- A batch landed again (after a crash, or by a replay) uses the bodies its first landing kept under
  ``payloads/``: by then the presigned URLs may have expired, and fetching them again would turn the
  landed changes into ``s3url_expired`` rejects.
- The bodies count against ``batch_max_bytes``: a batch of many large payloads is cut into several
  bounded batches (the memory benchmark, ``bench/bench_decode.py``, shows the peak RSS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from cognito_streams.landing_zone.writer import BatchWriter
from tests.integration.test_landing import make_landing
from tests.integration.test_landing_s3url import EXPIRED, s3url_record
from tests.landing_records import SAMPLES, change, dumps, put_records, seed_records
from tests.support.http import QuietHandler, serving

pytestmark = pytest.mark.integration


class ExpiringS3(QuietHandler):
    """``/p/<n>``: body n at the first GET, then S3's "Request has expired" (a presigned URL's fate)."""

    bodies: ClassVar[dict[str, bytes]] = {}
    calls: ClassVar[Counter[str]] = Counter()

    def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler calls
        path = self.path.split("?", 1)[0]
        ExpiringS3.calls[path] += 1
        if ExpiringS3.calls[path] == 1 and path in ExpiringS3.bodies:
            self.send(200, ExpiringS3.bodies[path])
        else:
            self.send(403, EXPIRED)


@pytest.fixture
def expiring_s3() -> Iterator[str]:
    ExpiringS3.bodies.clear()
    ExpiringS3.calls.clear()
    with serving(ExpiringS3) as port:
        yield f"127.0.0.1:{port}"


def test_a_batch_landed_again_uses_the_kept_bodies_not_the_expired_urls(
    stack: Any, aws: Any, expiring_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN S3Url records between inline ones, whose presigned URLs work once and then have expired
    landing = make_landing(aws, s3url_allowed_hosts=[expiring_s3], s3url_fetch_retries=0)
    data: list[bytes] = []
    for i in range(3):
        ExpiringS3.bodies[f"/p/{i}"] = SAMPLES["s3url-body"]
        data += [seed_records(1, seed=i)[0], s3url_record(f"http://{expiring_s3}/p/{i}?X-Amz-Signature=s{i}", str(i))]
    put = put_records(landing.kinesis, landing.stream, data)
    s3url_sequences = {p["SequenceNumber"] for p in put[1::2]}
    # AND a task that dies after fetching and keeping the payloads, before the batch's descriptor
    real_put = BatchWriter._put

    def no_descriptor(self: BatchWriter, key: str, body: bytes, content_type: str) -> None:
        if "/batches/" in key:
            raise ConnectionError("injected: the task dies before the descriptor")
        real_put(self, key, body, content_type)

    monkeypatch.setattr(BatchWriter, "_put", no_descriptor)
    with pytest.raises(ConnectionError):
        landing.run(owner="run-1")
    monkeypatch.undo()
    assert landing.descriptors() == [] and sum(ExpiringS3.calls.values()) == 3
    # WHEN the batch is landed again, its URLs expired meanwhile
    (outcome,) = landing.run(owner="run-1")
    # THEN the payloads land from the bodies kept by the first attempt: no s3url_expired, no URL fetched again
    assert outcome.records_rejected == 0 and outcome.records_landed == len(data)
    rows = landing.changes().to_pylist()
    assert {r["sequence_number"] for r in rows if r["payload_type"] == "S3Url"} == s3url_sequences
    assert sum(ExpiringS3.calls.values()) == 3
    # WHEN the shard is replayed later (a decoding fix, a re-land)  THEN the kept bodies serve the replay too
    landing.run(owner="replay", replay_from=datetime.now(UTC) - timedelta(hours=1), run_id="replay")
    replayed = [d for d in landing.descriptors() if d.replay]
    assert replayed and all(d.kinesis_records_rejected == 0 for d in replayed)
    assert sum(d.kinesis_records_landed for d in replayed) == len(data)
    assert sum(ExpiringS3.calls.values()) == 3


def big_body(i: int, value_bytes: int) -> bytes:
    return dumps([change(f"big{i}", chr(ord("a") + i % 26) * value_bytes, 2, 1_424_802_000_000)])


def test_large_payloads_cut_the_batch_within_batch_max_bytes(stack: Any, aws: Any, expiring_s3: str) -> None:
    # GIVEN 12 S3Url records of 40 KiB payloads each (a bulk publish of large datasets): their Kinesis
    # records are small, their bodies are not; batch_max_bytes is 100 KiB
    limit = 100 * 1024
    landing = make_landing(
        aws,
        s3url_allowed_hosts=[expiring_s3],
        batch_max_bytes=limit,
        s3url_fetch_retries=0,
        s3url_fetch_concurrency=3,  # fewer than the payloads: the cut comes while fetches are still to start
    )
    for i in range(12):
        ExpiringS3.bodies[f"/p/{i}"] = big_body(i, 40 * 1024)
    data = [s3url_record(f"http://{expiring_s3}/p/{i}?X-Amz-Signature=s{i}", str(i)) for i in range(12)]
    put = put_records(landing.kinesis, landing.stream, data)
    assert sum(len(d) for d in data) < limit < 12 * 40 * 1024
    # WHEN landed
    outcomes = landing.run_until_idle()
    # THEN every record is landed once, from its payload (fetched once: later batches found it kept)
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}
    assert sum(o.records_landed for o in outcomes) == 12 and sum(o.records_rejected for o in outcomes) == 0
    assert set(ExpiringS3.calls.values()) == {1}
    # AND no batch holds more than batch_max_bytes of records and payload bodies: 2 records of 40 KiB each
    descriptors = sorted(landing.descriptors(), key=lambda d: int(d.first_sequence_number))
    assert [d.kinesis_records_read for d in descriptors] == [2] * 6
    # AND the checkpoint is after the last record, and nothing is left to read
    (shard_id,) = landing.shard_ids()
    assert landing.checkpoint(shard_id).sequence_number == put[-1]["SequenceNumber"]


def test_one_payload_larger_than_the_budget_still_lands_alone(stack: Any, aws: Any, expiring_s3: str) -> None:
    landing = make_landing(aws, s3url_allowed_hosts=[expiring_s3], batch_max_bytes=16 * 1024)
    ExpiringS3.bodies["/p/0"] = big_body(0, 40 * 1024)
    ExpiringS3.bodies["/p/1"] = big_body(1, 40 * 1024)
    data = [s3url_record(f"http://{expiring_s3}/p/{i}?X-Amz-Signature=s", str(i)) for i in range(2)]
    put = put_records(landing.kinesis, landing.stream, data)
    landing.run_until_idle()
    assert [d.kinesis_records_landed for d in landing.descriptors()] == [1, 1]
    assert landing.landed_positions() == {(p["ShardId"], p["SequenceNumber"]) for p in put}

"""``S3Url`` payload fetching: rate against concurrency, beside a sequential fetcher (concurrency 1).

The landing task fetches every ``S3Url`` payload of a batch at once (presigned URLs expire) with
``PayloadFetcher`` (``s3url_fetch_concurrency`` threads, default 16). Two servers, the same bodies
(JSON arrays of records, like Cognito's, 64 KiB each):

- **moto S3**, presigned GET URLs from the benchmark stack: the real S3 request path, on loopback, so
  the rate is bound by moto's CPU, not by waiting;
- **an S3-like server with 20 ms to first byte** (a small-object GET from S3 in the same region takes
  about 10-30 ms): the waiting that concurrency exists to overlap.

Figures: payloads/s at concurrency 4, 16 and 64, each with the sequential rate as its baseline.

And the memory of landing ``S3Url``-heavy backlogs (issue 18, item 5): the peak RSS of a fresh process
landing, from moto Kinesis and moto S3 (presigned URLs), a backlog of S3Url records whose payloads are
1 MiB each, at two backlog sizes, with the default batch settings. The bodies count against
``batch_max_bytes`` (64 MiB) and are streamed into spools, so the peak follows the batch settings, not
the number of payloads (before, every body of a batch was in memory at once, twice: 300 x 1 MiB raised
the RSS from 27 to 336 MiB in the review's reproduction).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from bench.harness import REPO, BenchContext, Figure

LATENCY_S = 0.020
BODY_BYTES = 64 * 1024
CONCURRENCY = (4, 16, 64)


def _body(i: int) -> bytes:
    """A JSON array of records of about BODY_BYTES (what an S3Url payload holds)."""
    value = ("x" * 900 + f"{i:08d}") * (BODY_BYTES // 1000 // 4)
    records = [
        {
            "key": f"snapshot_{k}",
            "value": value,
            "syncCount": 3,
            "lastModifiedDate": 1_700_000_000_000,
            "deviceLastModifiedDate": 1_700_000_000_000,
            "op": "replace",
        }
        for k in range(4)
    ]
    return json.dumps(records).encode()


class _SlowS3(BaseHTTPRequestHandler):
    """GET /<n> answers body n after LATENCY_S, like a small-object GET from S3."""

    bodies: ClassVar[list[bytes]] = []
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms to each.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        time.sleep(LATENCY_S)
        body = self.bodies[int(self.path.strip("/").split("?")[0])]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _rates(urls: list[str], allowed: frozenset[str]) -> dict[int, float]:
    """Payloads per second at concurrency 1 and each of CONCURRENCY (best of 2)."""
    from cognito_streams.landing.s3url import PayloadFetcher

    out: dict[int, float] = {}
    for concurrency in (1, *CONCURRENCY):
        fetcher = PayloadFetcher(
            concurrency=concurrency, timeout_seconds=30, retries=0, max_bytes=4 * BODY_BYTES, allowed_hosts=allowed
        )
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            results = fetcher.fetch_all(urls)
            best = min(best, time.perf_counter() - t0)
            failed = [r for r in results if not r.ok]
            if failed:
                raise RuntimeError(
                    f"{len(failed)} of {len(urls)} payloads failed: {failed[0].reason} {failed[0].detail}"
                )
        out[concurrency] = len(urls) / best
    return out


# -- memory while landing S3Url payloads ----------------------------------------------------------------

#: A payload like a large Cognito dataset: 16 keys of about 64 KB (under the warehouse's 65,535-byte
#: values, so nothing is cut), about 1 MiB in all.
PAYLOAD_KEYS = 16
PAYLOAD_VALUE_BYTES = 65_000


def _large_body(i: int) -> bytes:
    value = (f"{i:08d}" + "v" * 92) * (PAYLOAD_VALUE_BYTES // 100)
    records = [
        {
            "key": f"blob_{k}",
            "value": value,
            "syncCount": 2,
            "lastModifiedDate": 1_700_000_000_000,
            "deviceLastModifiedDate": 1_700_000_000_000,
            "op": "replace",
        }
        for k in range(PAYLOAD_KEYS)
    ]
    return json.dumps(records).encode()


def _memory_child(n: int) -> None:
    """In a fresh process: ``n`` S3Url records (1 MiB payloads in moto S3, presigned) on a moto stream,
    landed with the default batch settings; prints the peak RSS of the landing (MiB) as JSON."""
    import boto3

    from bench.bench_decode import _peak_mib, _reset_peak
    from cognito_streams.landing.runner import LandingContext, land_shard, plan_run
    from cognito_streams.settings import parse_settings
    from tests.landing_records import dumps, put_records, record

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    kinesis = boto3.client("kinesis", endpoint_url=endpoint)
    name = f"bench-s3url-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    body_bytes = 0
    data = []
    for i in range(n):
        body = _large_body(i)
        body_bytes += len(body)
        s3.put_object(Bucket=name, Key=f"p/{i}", Body=body)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": f"p/{i}"}, ExpiresIn=3600)
        data.append(dumps(record(None, url=url, dataset=f"big_{i}", at=1_700_000_000_000, sync_count=2)))
        del body
    put_records(kinesis, name, data)
    del data
    settings = parse_settings(
        {
            **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
            "stream_name": name,
            "landing_prefix": f"bench/{name}",
            "run_max_seconds": 3_000,
            "checkpoint_lease_seconds": 3_600,
        }
    )
    context = LandingContext.from_settings(settings)
    # Reset after the set-up above (the bodies it made), so that the peak covers the landing only.
    _reset_peak()
    before = _peak_mib()
    started = time.perf_counter()
    plan, _ = plan_run(context, "bench")
    outcomes = [land_shard(context, shard, "bench") for shard in plan.readable]
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "payloads": n,
                "body_mib": body_bytes / 2**20,
                "landed": sum(o.records_landed for o in outcomes),
                "rejected": sum(o.records_rejected for o in outcomes),
                "batches": sum(len(o.batches) for o in outcomes),
                "peak_mib": _peak_mib(),
                "before_mib": before,
                "seconds": elapsed,
            }
        )
    )


def _run_memory_child(n: int, endpoint: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        "AWS_ENDPOINT_URL": endpoint,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_s3url", "--memory-child", str(n)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"landing {n} S3Url payloads failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def memory(ctx: BenchContext) -> list[Figure]:
    """Peak RSS landing S3Url-heavy backlogs of two sizes (1 MiB payloads, default batch settings)."""
    stack = ctx.stack(emulator=False)
    small_n, large_n = ctx.scale(80, 100), ctx.scale(240, 300)
    small = _run_memory_child(small_n, stack.cfg.aws_endpoint)
    large = _run_memory_child(large_n, stack.cfg.aws_endpoint)
    for result in (small, large):
        if result["landed"] != result["payloads"] or result["rejected"]:
            raise RuntimeError(f"S3Url backlog landing lost or rejected payloads: {result}")
    return [
        Figure(
            f"peak RSS landing {large_n} S3Url payloads of 1 MiB",
            round(large["peak_mib"], 1),
            "MiB",
            higher_is_better=False,
            baseline=f"peak RSS landing {small_n} S3Url payloads of 1 MiB",
            baseline_value=round(small["peak_mib"], 1),
            goal="about 1x: bounded by batch_max_bytes, not by the number of payloads",
            note=(
                f"default batch settings (batch_max_bytes 64 MiB, bodies included); {large['body_mib']:.0f} MiB of "
                f"payloads landed in {large['batches']} batches ({small['batches']} for {small['body_mib']:.0f} "
                f"MiB); process RSS before landing {large['before_mib']:.0f} MiB; "
                f"{large['body_mib'] / large['seconds']:.1f} MiB/s of payloads from moto S3"
            ),
        )
    ]


def run(ctx: BenchContext) -> list[Figure]:
    """``make bench`` entry point."""
    import boto3

    from cognito_streams.core.landing import s3url

    stack = ctx.stack(emulator=False)
    n = ctx.scale(200, 1_000)
    bodies = [_body(i) for i in range(n)]
    mb = sum(len(b) for b in bodies) / 1e6

    # moto S3, presigned
    s3 = boto3.client("s3", endpoint_url=stack.cfg.aws_endpoint, region_name=stack.cfg.region)
    bucket = f"bench-s3url-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    for i, body in enumerate(bodies):
        s3.put_object(Bucket=bucket, Key=f"payload-{i}", Body=body)
    moto_urls = [
        s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": f"payload-{i}"}, ExpiresIn=3600)
        for i in range(n)
    ]
    moto_rates = _rates(moto_urls, frozenset({s3url.host_of(stack.cfg.aws_endpoint) or ""}))

    # an S3-like server with S3's latency
    _SlowS3.bodies = bodies
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowS3)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        slow_rates = _rates([f"http://{host}/{i}?X-Amz-Signature=bench" for i in range(n)], frozenset({host}))
    finally:
        server.shutdown()

    figures = []
    for label, rates, note in (
        ("20 ms to first byte", slow_rates, f"an S3-like server answering after {LATENCY_S * 1000:.0f} ms"),
        ("moto S3, loopback", moto_rates, "presigned GETs to the stack's moto: bound by moto's CPU, not by waiting"),
    ):
        for concurrency in CONCURRENCY:
            figures.append(
                Figure(
                    f"S3Url fetch, concurrency {concurrency}, {label}",
                    round(rates[concurrency], 1),
                    "payloads/s",
                    baseline="the same fetcher, sequential (concurrency 1)",
                    baseline_value=round(rates[1], 1),
                    note=f"{n} payloads of {BODY_BYTES // 1024} KiB ({mb:.0f} MB); {note}"
                    + ("; 16 is the default s3url_fetch_concurrency" if concurrency == 16 else ""),
                )
            )
    return figures + memory(ctx)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        _memory_child(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.bench_s3url --memory-child <payloads>")

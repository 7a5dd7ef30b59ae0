"""``S3Url`` payload fetching: rate against concurrency, beside a sequential fetcher (concurrency 1).

The landing task fetches every ``S3Url`` payload of a batch at once (presigned URLs expire) with
``PayloadFetcher`` (``s3url_fetch_concurrency`` threads, default 16). Two servers, the same bodies
(JSON arrays of records, like Cognito's, 64 KiB each):

- **moto S3**, presigned GET URLs from the benchmark stack: the real S3 request path, on loopback, so
  the rate is bound by moto's CPU, not by waiting;
- **an S3-like server with 20 ms to first byte** (a small-object GET from S3 in the same region takes
  about 10-30 ms): the waiting that concurrency exists to overlap.

Figures: payloads/s at concurrency 4, 16 and 64, each with the sequential rate as its baseline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from bench.harness import BenchContext, Figure

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


def run(ctx: BenchContext) -> list[Figure]:
    """``make bench`` entry point."""
    import boto3

    from cognito_streams.core import s3url

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
    return figures

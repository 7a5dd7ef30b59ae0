"""How fast the local Cognito Sync produces stream records: the simulator's changes through boto3,
the emulator and moto Kinesis, end to end; and the emulator's raw UpdateRecords rate.

No baseline exists for these (nothing else emulates Cognito Sync), so the figures carry none: they
say how long the demo and the end-to-end benchmarks spend making their input.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote, urlparse

import boto3

from bench.harness import BenchContext, Figure
from local.emulator.control import EmulatorControl
from local.simulator import SimulationConfig, ensure_streaming, simulate

NO_BASELINE = "no baseline exists: no other Cognito Sync emulator to compare with"


def _count_stream(kinesis: Any, stream: str) -> tuple[int, int]:
    """(records, S3Url records) on the stream."""
    records = s3url = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += len(page["Records"])
            s3url += sum(b'"payloadType":"S3Url"' in r["Data"] for r in page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records, s3url


def _raw_update_records(endpoint: str, pool: str, identities: list[str], calls: int) -> float:
    """UpdateRecords per second from plain keep-alive HTTP clients (one thread per identity), so
    the figure is the emulator's, not boto3's."""
    host = urlparse(endpoint)
    per_thread = calls // len(identities)
    errors: list[str] = []

    def device(identity: str) -> None:
        conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=30)
        base = f"/identitypools/{quote(pool, safe='')}/identities/{quote(identity, safe='')}/datasets/raw_bench"
        conn.request("GET", base + "/records")
        token = json.loads(conn.getresponse().read())["SyncSessionToken"]
        count = 0
        for i in range(per_thread):
            body = json.dumps(
                {
                    "SyncSessionToken": token,
                    "RecordPatches": [{"Op": "replace", "Key": "score", "Value": str(i), "SyncCount": count}],
                }
            )
            conn.request("POST", base, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 200:
                errors.append(f"{response.status}: {answer}")
                return
            count = answer["Records"][0]["SyncCount"]
        conn.close()

    threads = [threading.Thread(target=device, args=(i,)) for i in identities]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"raw UpdateRecords failed: {errors[0]}")
    return per_thread * len(identities) / elapsed


def run(ctx: BenchContext) -> list[Figure]:
    """Simulate ``ctx.scale(10_000, 100_000)`` changes into Kinesis; then raw UpdateRecords calls."""
    stack = ctx.stack(emulator=True)
    endpoint = stack.cfg.emulator_endpoint
    session = boto3.session.Session(region_name=stack.cfg.region)
    identity = session.client("cognito-identity", endpoint_url=stack.cfg.aws_endpoint)
    kinesis = session.client("kinesis", endpoint_url=stack.cfg.aws_endpoint)
    pool = identity.create_identity_pool(
        IdentityPoolName=f"bench_{uuid.uuid4().hex[:8]}", AllowUnauthenticatedIdentities=True
    )["IdentityPoolId"]
    stream = f"bench-emulator-{uuid.uuid4().hex[:8]}"
    ensure_streaming(
        [pool],
        stream_name=stream,
        shards=2,
        role_name=f"bench-{uuid.uuid4().hex[:8]}",
        aws_endpoint=stack.cfg.aws_endpoint,
        cognito_sync_endpoint=endpoint,
        region=stack.cfg.region,
    )
    ctl = EmulatorControl(endpoint)
    # Large updates sized for a 64 KiB threshold (older docs said 50 KB): S3Url on every path,
    # without pushing hundreds of MB through moto.
    ctl.update_settings(s3url_threshold_bytes=64 * 1024)
    changes = ctx.scale(10_000, 100_000)
    identities = ctx.scale(200, 1000)
    workers, processes = 3, 2  # boto3 costs ~2 ms of CPU per call: one client process saturates a core

    t0 = time.perf_counter()
    stats = simulate(
        SimulationConfig(
            identity_pool_ids=(pool,),
            identities_per_pool=identities,
            changes=changes,
            workers=workers,
            processes=processes,
            large_share=0.01,
            cognito_sync_endpoint=endpoint,
            aws_endpoint=stack.cfg.aws_endpoint,
            region=stack.cfg.region,
        )
    )
    ctl.flush(timeout=600)
    elapsed = time.perf_counter() - t0
    on_stream, s3url = _count_stream(kinesis, stream)
    if (on_stream, s3url) != (stats.stream_records_expected, stats.stream_records_expected_s3url):
        raise RuntimeError(
            f"the stream holds {on_stream} records ({s3url} S3Url); the simulator expected "
            f"{stats.stream_records_expected} ({stats.stream_records_expected_s3url} S3Url)"
        )

    raw_identities = [identity.get_id(IdentityPoolId=pool)["IdentityId"] for _ in range(4)]
    raw_calls = ctx.scale(4_000, 20_000)
    raw_rate = _raw_update_records(endpoint, pool, raw_identities, raw_calls)
    ctl.flush(timeout=600)

    setup = (
        f"{identities} identities, {processes} processes x {workers} worker threads, "
        "1% large (S3Url, 64 KiB threshold) updates, 2-shard stream"
    )
    return [
        Figure(
            name="emulator: simulated record changes into Kinesis",
            value=changes / elapsed,
            unit="changes/s",
            note=f"{changes} changes ({stats.syncs} syncs, {stats.conflicts} conflicts retried) via boto3 "
            f"ListRecords+UpdateRecords, {setup}, until all are on the stream; {NO_BASELINE}",
        ),
        Figure(
            name="emulator: Kinesis records published (end to end)",
            value=on_stream / elapsed,
            unit="records/s",
            note=f"{on_stream} records ({s3url} S3Url), counted on the stream; {NO_BASELINE}",
        ),
        Figure(
            name="emulator: raw UpdateRecords calls",
            value=raw_rate,
            unit="calls/s",
            note=f"{raw_calls} calls from 4 keep-alive http.client threads (no boto3 overhead), "
            f"streaming ENABLED; {NO_BASELINE}",
        ),
    ]

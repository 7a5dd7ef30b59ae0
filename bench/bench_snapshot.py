"""``cognito_snapshot``: how fast the walk reads Cognito Sync, and what the export of the demo's data costs.

The data: the demo's app activity (``local.demo.DemoConfig``: 300 identities, 3,000 changes with removes,
dataset deletes and 2 % large values) made by the simulator on a pool whose streaming is off, so the
snapshot is the only way in. Full mode walks a pool five times that size as well.

Figures:

- the walk's identities/s with the emulator's rate limit on (``rate_limit_calls_per_second``, AWS
  documents the exception, not the rate): against the ceiling that limit allows (the rate divided by the
  calls one identity takes), with the throttled answers the back-off absorbed;
- the walk's identities/s without a limit, against the same walk one identity at a time
  (``snapshot_concurrency`` 1): what reading identities at once buys on one machine;
- the export of the demo's data (Parquet + DynamoDB JSON, values whole): its time against reading the
  same rows alone (the warehouse query and the cut values' whole text), and its size.

The task bodies run in this process (no Airflow scheduler): the figures are the snapshot's own work.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime
from typing import Any

import boto3

from bench.harness import BenchContext, Figure
from local.demo import DemoConfig
from local.emulator.control import EmulatorControl
from local.simulator import SimulationConfig, simulate

#: The emulator's rate limit for the throttled walk (calls/s and burst).
RATE_LIMIT = 60.0
RATE_BURST = 10


def _settings(stack: Any, pool_id: str, **overrides: Any) -> Any:
    from cognito_streams.settings import parse_settings

    suffix = uuid.uuid4().hex[:8]
    variable = {
        **json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"]),
        "identity_pool_ids": [pool_id],
        "stream_name": f"bench-snapshot-{suffix}",
        "landing_prefix": f"bench-snapshot/{suffix}",
        "warehouse_schema": f"bench_snapshot_{suffix}",
        **overrides,
    }
    return parse_settings(variable)


def _pool(stack: Any, identities: int, changes: int, seed: int) -> str:
    """A pool with the demo's kind of activity and no streaming."""
    identity = boto3.client("cognito-identity", endpoint_url=stack.cfg.aws_endpoint, region_name=stack.cfg.region)
    pool_id = str(
        identity.create_identity_pool(
            IdentityPoolName=f"bench_snapshot_{uuid.uuid4().hex[:8]}", AllowUnauthenticatedIdentities=True
        )["IdentityPoolId"]
    )
    demo = DemoConfig()
    simulate(
        SimulationConfig(
            identity_pool_ids=(pool_id,),
            identities_per_pool=identities,
            changes=changes,
            seed=seed,
            workers=4,
            processes=1,
            large_share=demo.large_share,
            remove_share=demo.remove_share,
            delete_share=demo.delete_share,
            cognito_sync_endpoint=stack.cfg.emulator_endpoint,
            aws_endpoint=stack.cfg.aws_endpoint,
            region=stack.cfg.region,
        )
    )
    return pool_id


def _walk(settings: Any, run_id: str) -> dict[str, Any]:
    """One snapshot's paging and walk (timed: the walk only); returns the walk tasks' summed counts."""
    from cognito_streams.snapshot import tasks

    run = tasks.parse_params({}, run_id, settings)
    units = tasks.page(run, run_id, settings)
    t0 = time.perf_counter()
    outs = [tasks.walk(unit, settings) for unit in units]
    seconds = time.perf_counter() - t0
    total = {k: sum(int(o[k]) for o in outs) for k in ("identities", "calls", "throttled", "backoffs", "batches")}
    return {**total, "seconds": seconds, "run": run, "units": units}


def run(ctx: BenchContext) -> list[Figure]:
    from cognito_streams.snapshot import tasks
    from cognito_streams.snapshot.export import export_chunks, export_rows, finish_export
    from cognito_streams.snapshot.walker import SnapshotContext

    stack = ctx.stack(emulator=True)
    ctl = EmulatorControl(stack.cfg.emulator_endpoint)
    demo = DemoConfig()
    figures: list[Figure] = []

    # The demo's data: walked at full speed (then loaded and exported), one at a time, and rate-limited.
    pool_id = _pool(stack, demo.identities, demo.changes, seed=21)
    settings = _settings(stack, pool_id)
    fast = _walk(settings, "bench__fast")
    loaded = tasks.load(fast["run"], settings)
    one = _walk(_settings(stack, pool_id, snapshot_concurrency=1), "bench__one")
    ctl.update_settings(rate_limit_calls_per_second=RATE_LIMIT, rate_limit_burst=RATE_BURST)
    try:
        limited = _walk(_settings(stack, pool_id), "bench__limited")
    finally:
        ctl.update_settings(rate_limit_calls_per_second=0)
    walks = [("the demo's data", fast, one, limited)]
    if ctx.full:
        big_pool = _pool(stack, 5 * demo.identities, 5 * demo.changes, seed=22)
        big_fast = _walk(_settings(stack, big_pool), "bench__big_fast")
        big_one = _walk(_settings(stack, big_pool, snapshot_concurrency=1), "bench__big_one")
        ctl.update_settings(rate_limit_calls_per_second=RATE_LIMIT, rate_limit_burst=RATE_BURST)
        try:
            big_limited = _walk(_settings(stack, big_pool), "bench__big_limited")
        finally:
            ctl.update_settings(rate_limit_calls_per_second=0)
        walks.append((f"{5 * demo.identities} identities", big_fast, big_one, big_limited))

    for label, full_speed, single, throttled in walks:
        n = full_speed["identities"]
        per_identity = full_speed["calls"] / n
        ceiling = RATE_LIMIT / per_identity
        figures.append(
            Figure(
                name=f"snapshot walk with the emulator's rate limit, {label}",
                value=n / throttled["seconds"],
                unit="identities/s",
                baseline=f"the limit's ceiling: {RATE_LIMIT:g} calls/s / {per_identity:.2f} calls per identity",
                baseline_value=ceiling,
                note=f"{n} identities, concurrency {settings.snapshot_concurrency}; {throttled['throttled']} "
                f"answers were TooManyRequestsException (burst {RATE_BURST}), absorbed by botocore's adaptive "
                f"retries and {throttled['backoffs']} back-off(s) of ours; {throttled['calls']} HTTP answers in all",
            )
        )
        figures.append(
            Figure(
                name=f"snapshot walk without a rate limit, {label}",
                value=n / full_speed["seconds"],
                unit="identities/s",
                baseline="the same walk one identity at a time (snapshot_concurrency 1)",
                baseline_value=n / single["seconds"],
                note=f"{n} identities, {full_speed['calls']} calls ({per_identity:.2f} per identity), "
                f"{full_speed['batches']} batches landed; concurrency {settings.snapshot_concurrency}",
            )
        )

    # The export of the demo's data, against reading its rows alone.
    ctx_s = SnapshotContext.from_settings(settings)
    snapshot_id = fast["run"]["snapshot_id"]
    t0 = time.perf_counter()
    keys = 0
    with ctx_s.warehouse() as wh:
        for unit in fast["units"]:
            for name in unit["chunks"]:
                chunk = ctx_s.store.chunk(snapshot_id, name)
                keys += len(export_rows(ctx_s, wh, chunk.identity_pool_id, chunk.identities))
    read_seconds = time.perf_counter() - t0
    # The export's own work with the same clients as the read (a task also makes its clients: ~1 s).
    t0 = time.perf_counter()
    parts = [export_chunks(ctx_s, snapshot_id, unit["chunks"]) for unit in fast["units"]]
    mark = loaded.get("loaded_through")
    manifest = finish_export(ctx_s, snapshot_id, parts, None if mark is None else datetime.fromisoformat(mark))
    export_seconds = time.perf_counter() - t0
    size = manifest["bytes"]
    total_bytes = size["parquet"] + size["dynamodb"] + size["values"]
    if manifest["keys"] != keys:
        raise RuntimeError(f"the export holds {manifest['keys']} keys; the warehouse has {keys} live keys")
    figures.append(
        Figure(
            name="export of the demo's data: time",
            value=export_seconds,
            unit="s",
            higher_is_better=False,
            baseline="reading the same rows alone (warehouse query + whole values from value_ref)",
            baseline_value=read_seconds,
            note=f"{keys} live keys of {demo.identities} identities, {manifest['values_in_s3']} value(s) too large "
            "for a DynamoDB item written to S3",
        )
    )
    figures.append(
        Figure(
            name="export of the demo's data: size",
            value=total_bytes / 1e6,
            unit="MB",
            higher_is_better=False,
            note=f"Parquet (zstd) {size['parquet'] / 1e6:.2f} MB, DynamoDB JSON (gzip) "
            f"{size['dynamodb'] / 1e6:.2f} MB, values in S3 {size['values'] / 1e6:.2f} MB; {keys} live keys",
        )
    )
    return figures

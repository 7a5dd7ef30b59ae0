"""Run one pipeline task in this process and die with SIGKILL at a chosen point, as a worker does
when the machine loses power or the OOM killer strikes: no ``finally``, no rollback sent, no lease
given back, nothing flushed.

    python -m tests.faults.crash_child spec.json

The spec: ``{"task": "land" | "load" | "snapshot", "kill_at": <point>, "nth": n, "variable": {...}, "dag_id",
"run_id"}``. The task runs the same function bodies the DAG's tasks run (``landing.tasks.plan`` then
``landing.tasks.land`` per shard; ``loading.loader.ensure_schema`` then ``loading.loader.load_landing_zone``;
``snapshot.tasks.parse_params``, ``page`` then ``walk`` per unit);
the kill point wraps one pipeline function so that its ``nth`` call ends the process:

landing
    ``after_batch_written``  a batch's objects and descriptor are in S3, its checkpoint not moved yet
    ``before_descriptor``    the batch's data files are written, its descriptor not yet
    ``s3url_fetch``          an S3Url payload was fetched (others of the batch maybe not)
    ``after_checkpoint``     the checkpoint moved, the lease not given back
snapshot
    ``snapshot_batch_written``  a snapshot batch's objects and descriptor are in S3, its chunk's cursor
                                not moved yet
    ``snapshot_read``           ListRecords answered for a dataset (others of the batch maybe not)
loading
    ``copy``                 rows were sent into the stage, the COPY still open
    ``sql:<statement>``      the transaction reached that statement of sql/load.sql (not run), e.g.
                             ``sql:create_dataset_updates`` = MERGE INTO records done, before commit

If the task ends without reaching the point, the process exits with status 3 so that the test
notices (a kill that did not happen proves nothing).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

NOT_REACHED = 3


def die(where: str) -> None:
    """SIGKILL this process now."""
    sys.stderr.write(f"crash_child: SIGKILL at {where}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(owner: Any, name: str, nth: int, *, after: bool, when: Callable[..., bool] | None = None) -> None:
    """Replace ``owner.name`` by a wrapper whose ``nth`` matching call dies (before or after the call)."""
    original = getattr(owner, name)
    calls = [0]
    lock = threading.Lock()

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when is not None and not when(*args, **kwargs):
            return original(*args, **kwargs)
        with lock:
            calls[0] += 1
            hit = calls[0] == nth
        if hit and not after:
            die(f"{owner.__name__}.{name} #{nth} (before)")
        result = original(*args, **kwargs)
        if hit and after:
            die(f"{owner.__name__}.{name} #{nth} (after)")
        return result

    setattr(owner, name, wrapper)


def arm_point(kill_at: str, nth: int) -> None:
    """Wrap the pipeline function that ``kill_at`` names."""
    if kill_at == "after_batch_written":
        from cognito_streams.landing_zone.writer import BatchWriter

        arm(BatchWriter, "write", nth, after=True)
    elif kill_at == "before_descriptor":
        from cognito_streams.landing_zone.writer import BatchWriter

        arm(BatchWriter, "_put", nth, after=False, when=lambda _self, key, *a, **k: "/batches/" in key)
    elif kill_at == "s3url_fetch":
        from cognito_streams.landing.s3url import PayloadFetcher

        arm(PayloadFetcher, "_try", nth, after=True)
    elif kill_at == "after_checkpoint":
        from cognito_streams.landing_zone.checkpoints import CheckpointStore

        arm(CheckpointStore, "update", nth, after=True)
    elif kill_at == "snapshot_batch_written":
        from cognito_streams.landing_zone.writer import BatchWriter

        arm(BatchWriter, "write", nth, after=True)
    elif kill_at == "snapshot_read":
        from cognito_streams.hooks.cognito_sync import CognitoSyncHook

        arm(CognitoSyncHook, "fetch_records", nth, after=True)
    elif kill_at == "copy":
        import psycopg

        arm(psycopg.Copy, "write", nth, after=True)
    elif kill_at.startswith("sql:"):
        from cognito_streams.core.sql_text import WarehouseSql

        statement = kill_at.removeprefix("sql:")
        if not callable(getattr(WarehouseSql, statement, None)):
            raise SystemExit(f"crash_child: WarehouseSql has no statement method {statement!r}")
        arm(WarehouseSql, statement, nth, after=False)
    else:
        raise SystemExit(f"crash_child: unknown kill point {kill_at!r}")


def main(argv: list[str]) -> int:
    """Arm the kill point, run the task; reaching the end means the point was never reached."""
    spec = json.loads(Path(argv[1]).read_text())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    from cognito_streams.settings import parse_settings

    settings = parse_settings(spec["variable"])
    arm_point(spec["kill_at"], int(spec.get("nth", 1)))
    if spec["task"] == "land":
        from cognito_streams.landing import tasks

        for shard in tasks.plan({}, spec["dag_id"], spec["run_id"], settings):
            tasks.land(shard, spec["dag_id"], spec["run_id"], settings)
    elif spec["task"] == "snapshot":
        from cognito_streams.snapshot import tasks as snapshot

        run = snapshot.parse_params(spec.get("params") or {}, spec["run_id"], settings)
        for unit in snapshot.page(run, spec["run_id"], settings):
            snapshot.walk(unit, settings)
    elif spec["task"] == "load":
        from cognito_streams.landing_zone import load as loader

        loader.ensure_schema(settings)
        loader.load_landing_zone(settings)
    else:
        raise SystemExit(f"crash_child: unknown task {spec['task']!r}")
    sys.stderr.write(f"crash_child: the task ended without reaching {spec['kill_at']} #{spec.get('nth', 1)}\n")
    return NOT_REACHED


if __name__ == "__main__":
    sys.exit(main(sys.argv))

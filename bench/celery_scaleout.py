"""Landing throughput on the CeleryExecutor: one pre-filled 8-shard stream landed by one worker, then by two.

    python -m bench.celery_scaleout [--records 80000] [--shards 8] [--concurrency 4] [--rounds 1] [--workers 1,2]
    make bench-celery

One local stack in Celery mode (``CS_EXECUTOR=celery``; moto as ``bench.fastmoto``, whose Kinesis does not slow
down as the stream grows: Redis, the metadata DB on PostgreSQL, the API server,
scheduler, DAG processor, triggerer, two workers of ``--concurrency`` slots each). Each round: put ``--records``
synthetic Cognito Streams records (``bench_e2e.synthetic_records``) into the stream, trigger one
``cognito_stream_to_s3`` run with worker-2 stopped (1 worker), then as many again with both workers (2 workers).
Printed per run: records landed / the run's duration (Airflow's start and end dates of the DAG run), the span
of its ``land_shard`` task instances alone, and where they ran. Not part of ``make bench``: it starts a whole
Airflow deployment (minutes); the figures are quoted in docs/scaling.md with the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import datetime
from typing import Any

from bench.bench_e2e import synthetic_records
from bench.harness import _start_fast_moto, cleanup, machine, scratch
from local.celery_stack import CeleryAirflow
from local.procs import free_port, wait_until
from local.stack import Stack, StackConfig

LAND_DAG = "cognito_stream_to_s3"


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Bench:
    """The Celery stack, one stream, and the REST calls the runs need."""

    def __init__(self, shards: int, concurrency: int) -> None:
        self.dir = scratch()
        ports = {k: free_port() for k in ("moto_port", "emulator_port", "pg_port", "redshift_port", "airflow_port")}
        self.cfg = StackConfig(
            state_dir=self.dir / "state",
            executor="celery",
            broker_port=free_port(),
            worker_concurrency=concurrency,
            stream_shards=shards,
            **ports,  # type: ignore[arg-type]
        )
        self.stack = Stack(self.cfg)
        self.shards = shards
        self.stream = f"bench-celery-{uuid.uuid4().hex[:6]}"
        self.token = ""

    @property
    def airflow(self) -> CeleryAirflow:
        return self.stack.celery

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.token = self.token or self.airflow._token()
        return self.airflow._api(method, path, body, self.token)

    def start(self) -> None:
        import boto3

        # moto's Kinesis slows down as a stream grows (O(records) per put and read); the benchmarks' moto does not.
        _start_fast_moto(self.stack)
        env = self.stack.up(migrate=True, emulator=False, redshift=False)
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "CS_"))})
        self.kinesis = boto3.client("kinesis", endpoint_url=self.cfg.aws_endpoint, region_name=self.cfg.region)
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=self.shards)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=self.stream, WaiterConfig={"Delay": 1})
        variable = {
            **json.loads(env["AIRFLOW_VAR_COGNITO_PIPELINE"]),
            "stream_name": self.stream,
            "stream_shards": self.shards,
            "landing_prefix": f"bench/{self.stream}",
            "run_max_seconds": 600,
            "checkpoint_lease_seconds": 1200,
        }
        self.airflow.extra_env = {
            "AIRFLOW_VAR_COGNITO_PIPELINE": json.dumps(variable),
            "AIRFLOW__COGNITO_STREAMS__LANDING_MODE": "schedule",  # manual runs only
            "AIRFLOW__COGNITO_STREAMS__LANDING_SCHEDULE": "0 0 1 1 *",
        }
        self.stack.airflow_up(alive=False)
        self.stack.airflow.unpause((LAND_DAG,))
        # Unpausing starts the schedule's latest run at once (catchup off): let it land the empty stream first.
        self.wait_idle()

    def wait_idle(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api("GET", f"/api/v2/dags/{LAND_DAG}/dagRuns?limit=100")["dag_runs"]
            if runs and all(r["state"] in ("success", "failed") for r in runs):
                return
            time.sleep(1)
        raise RuntimeError(f"{LAND_DAG}'s first scheduled run did not finish within {timeout:.0f} s")

    def fill(self, n: int, seed: int) -> None:
        records = synthetic_records(n, identities=2000, seed=seed)
        for lo in range(0, len(records), 500):
            entries = [{"Data": d, "PartitionKey": k} for k, d in records[lo : lo + 500]]
            if self.kinesis.put_records(StreamName=self.stream, Records=entries).get("FailedRecordCount"):
                raise RuntimeError("put_records failed")

    def set_workers(self, count: int) -> None:
        worker = self.airflow.worker("worker-2")
        if count == 1:
            worker.stop()
            wait_until(lambda: "worker-2" not in self.airflow.live_workers(), timeout=60, what="worker-2 gone")
        elif worker.pid() is None:
            worker.start()
            wait_until(lambda: "worker-2" in self.airflow.live_workers(), timeout=180, what="worker-2 up")

    def land(self) -> dict[str, Any]:
        run_id = self.api("POST", f"/api/v2/dags/{LAND_DAG}/dagRuns", {"logical_date": None, "conf": {}})["dag_run_id"]
        while True:
            run = self.api("GET", f"/api/v2/dags/{LAND_DAG}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                break
            time.sleep(1)
        if run["state"] != "success":
            raise RuntimeError(f"landing run {run_id} failed")
        tis = self.api("GET", f"/api/v2/dags/{LAND_DAG}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
        land = [t for t in tis if t["task_id"] == "land_shard"]
        xcom = f"/api/v2/dags/{LAND_DAG}/dagRuns/{run_id}/taskInstances/publish_landed/xcomEntries/return_value"
        extra = self.api("GET", xcom)["value"]
        extra = json.loads(extra) if isinstance(extra, str) else extra
        return {
            "records": int(extra["records_read"]),
            "run_seconds": (_when(run["end_date"]) - _when(run["start_date"])).total_seconds(),
            "land_span_seconds": (
                max(_when(t["end_date"]) for t in land) - min(_when(t["start_date"]) for t in land)
            ).total_seconds(),
            "task_seconds": sorted(round(float(t["duration"]), 1) for t in land),
            "hosts": sorted({t["hostname"] for t in land}),
        }

    def close(self) -> None:
        self.stack.down()
        cleanup(self.dir)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print one line per landing run."""
    parser = argparse.ArgumentParser(prog="python -m bench.celery_scaleout")
    parser.add_argument("--records", type=int, default=80_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4, help="slots per worker")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", default="1,2", help="worker counts to run in each round, e.g. 1 or 1,2")
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {info.get('cpus')} CPUs, load {info.get('load_average_1_5_15_min')}, {info.get('git_commit')}")
    bench = Bench(args.shards, args.concurrency)
    try:
        t0 = time.monotonic()
        bench.start()
        print(f"Celery deployment up in {time.monotonic() - t0:.0f} s", flush=True)
        results = []
        for r in range(args.rounds):
            for workers in (int(w) for w in args.workers.split(",")):
                bench.set_workers(workers)
                bench.fill(args.records, seed=100 * r + workers)
                out = bench.land()
                rate = out["records"] / out["run_seconds"]
                span_rate = out["records"] / out["land_span_seconds"]
                load = list(os.getloadavg())
                print(
                    f"{workers} worker(s) x {args.concurrency} slots, {args.shards} shards: {out['records']:,} records "
                    f"in {out['run_seconds']:.1f} s = {rate:,.0f} records/s (run); land_shard span "
                    f"{out['land_span_seconds']:.1f} s = {span_rate:,.0f} records/s; tasks {out['task_seconds']} s; "
                    f"on {', '.join(out['hosts'])}; load {' '.join(f'{x:.1f}' for x in load)}",
                    flush=True,
                )
                results.append({"workers": workers, **out, "records_per_s": rate, "load": load})
        print(json.dumps(results))
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

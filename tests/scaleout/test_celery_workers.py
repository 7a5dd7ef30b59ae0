"""The pipeline on Airflow's CeleryExecutor with two workers, as ``CS_EXECUTOR=celery make up`` runs it:
landing spreads over both workers, a worker SIGKILLed in the middle of a landing task costs nothing (its
task is retried on the other one), and no process reads a file that another "machine" wrote.

One stack of its own (moto, the Cognito Sync emulator, PostgreSQL, Redis, the API server, scheduler, DAG
processor, triggerer and two workers), about 6-9 minutes on two busy cores: run by ``make test-celery``
(``.ci/run`` runs it after ``make test``), not by ``make test``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.celery_stack import CeleryAirflow, kill_machine, remaining_processes, worker_names
from local.fileaudit import SITE_DIR, read_log, violations
from local.stack import REPO, Stack
from tests.conftest import make_stack_config
from tests.support.faults import Scenario, scenario

pytestmark = [pytest.mark.integration, pytest.mark.celery]

LAND_DAG = "cognito_stream_to_s3"
LOAD_DAG = "cognito_s3_to_redshift"
RECONCILE_DAG = "cognito_reconcile"
SHARDS = 4
#: Small batches: a landing task lands many of them, so there is a "middle" of a task to kill it in.
BATCH_RECORDS = 20


@dataclass
class CeleryDeployment:
    """The running two-worker deployment and what the test needs to drive it."""

    stack: Stack
    audit_log: Path

    @property
    def airflow(self) -> CeleryAirflow:
        return self.stack.celery

    token: str = ""

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A REST call; a GET is retried while the API server is too busy to answer (two shared cores)."""
        status, raw = self.request(method, path, body)
        if status >= 400:
            raise AssertionError(f"{method} {path}: HTTP {status}: {raw[:500]!r}")
        return dict(json.loads(raw or b"{}"))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        self.token = self.token or self.airflow._token()
        url = f"http://{self.stack.cfg.host}:{self.stack.cfg.airflow_port}{path}"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(5 if method == "GET" else 1):
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()
            except OSError:
                if attempt == 4 or method != "GET":
                    raise
                time.sleep(3)
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        """A signed-in GET of a page (status, body)."""
        return self.request("GET", path)

    def planned_shards(self, run_id: str) -> list[str]:
        """The shard ids ``plan_shards`` returned, in map-index order (``land_shard`` is mapped over them)."""
        path = f"/api/v2/dags/{LAND_DAG}/dagRuns/{run_id}/taskInstances/plan_shards/xcomEntries/return_value"
        value = self.api("GET", path)["value"]
        return [s["shard_id"] for s in (json.loads(value) if isinstance(value, str) else value)]

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 420) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise AssertionError(f"{dag_id} run {run_id} did not finish within {timeout:.0f} s")

    def task_instances(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?task_id={task_id}&limit=100")
        return [ti for ti in body["task_instances"] if ti["task_id"] == task_id]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        return list(self.api("GET", path)["task_instances"])

    def wait_loader_idle(self, after: int, timeout: float = 420) -> None:
        """Wait until the loader has finished more than ``after`` runs and none is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api("GET", f"/api/v2/dags/{LOAD_DAG}/dagRuns?limit=100")["dag_runs"]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            busy = [r for r in runs if r["state"] in ("queued", "running")]
            if len(done) > after and not busy:
                failed = [r["dag_run_id"] for r in done if r["state"] == "failed"]
                assert not failed, f"loader run(s) failed: {failed}"
                return
            time.sleep(2)
        raise AssertionError(f"the loader did not finish within {timeout:.0f} s")

    def loader_runs(self) -> int:
        return int(self.api("GET", f"/api/v2/dags/{LOAD_DAG}/dagRuns?limit=1")["total_entries"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    """The Celery stack's services (Airflow is started by the test, with the scenario's Variable)."""
    state = tmp_path_factory.mktemp("celery") / "state"
    cfg = make_stack_config(state, executor="celery", heartbeat_timeout=30, stream_shards=SHARDS)
    stack = Stack(cfg)
    try:
        env = stack.up(migrate=True, emulator=True, redshift=False)
        yield stack, env
    finally:
        stack.down()
    # `make down` stops everything it started: no process of this stack is left, no port open.
    assert stack.listening_ports() == []
    assert remaining_processes(cfg) == []


def _aws(stack: Stack):  # type: ignore[no-untyped-def]
    def client(service: str):  # type: ignore[no-untyped-def]
        endpoint = stack.cfg.emulator_endpoint if service == "cognito-sync" else stack.cfg.aws_endpoint
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=stack.cfg.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _checkpoint_landed(sc: Scenario, s3: Any, shard_id: str) -> int:
    from cognito_streams.core.landing_format import LandingLayout
    from cognito_streams.landing_zone.checkpoints import CheckpointStore

    layout = LandingLayout(sc.settings.landing_bucket, sc.settings.landing_prefix, sc.settings.stream_name)
    checkpoint = CheckpointStore(s3, layout, sc.settings.checkpoint_lease_seconds).read_all().get(shard_id)
    return 0 if checkpoint is None else checkpoint.records_landed + checkpoint.records_rejected


def test_two_workers_share_the_landing_and_a_lost_worker_loses_nothing(
    deployment: tuple[Stack, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, env = deployment
    for key, value in env.items():
        if key.startswith(("AWS_", "CS_", "AIRFLOW_VAR_", "AIRFLOW_CONN_")):
            monkeypatch.setenv(key, value)
    aws = _aws(stack)
    audit_log = tmp_path / "file-audit.log"
    with scenario(
        "celery-worker-loss", "SIGKILL of a Celery worker mid-landing", stack, aws, tmp_path,
        shards=SHARDS, identities=16, batch_max_records=BATCH_RECORDS, seed=23,
    ) as sc:  # fmt: skip
        # GIVEN the Celery deployment running with this scenario's Variable, every process's file access audited
        stack.celery.extra_env = {
            "AIRFLOW_VAR_COGNITO_PIPELINE": json.dumps(sc.variable),
            # Only manual landing runs: the test decides when a run starts (no watcher, a yearly schedule).
            "AIRFLOW__COGNITO_STREAMS__LANDING_MODE": "schedule",
            "AIRFLOW__COGNITO_STREAMS__LANDING_SCHEDULE": "0 0 1 1 *",
            "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(REPO), str(REPO / "plugins")]),
            "CS_FILE_AUDIT": str(audit_log),
            "CS_FILE_AUDIT_ROOT": str(stack.cfg.state_dir),
        }
        stack.airflow_up(alive=False)
        dep = CeleryDeployment(stack, audit_log)
        assert stack.celery.live_workers() == set(worker_names(stack.cfg))
        assert sorted(stack.airflow.unpause((LAND_DAG, LOAD_DAG))) == sorted((LAND_DAG, LOAD_DAG))
        s3 = aws("s3")

        # WHEN apps sync and a landing run lands the 4 shards
        sc.activity.run(160, delete_share=0.05)
        sc.flush()
        first = dep.trigger(LAND_DAG)
        assert dep.wait_run(LAND_DAG, first) == "success"
        # THEN both workers ran land_shard (Airflow's task instances say where: the hostname_callable)
        landed = dep.task_instances(LAND_DAG, first, "land_shard")
        assert len(landed) == SHARDS and all(ti["state"] == "success" for ti in landed)
        assert {ti["hostname"] for ti in landed} == set(worker_names(stack.cfg)), landed
        # ... and the loader, triggered by the landing Asset, loaded it (on whichever worker)
        dep.wait_loader_idle(after=0)
        loads = dep.loader_runs()

        # WHEN more syncs arrive and a worker is SIGKILLed in the middle of a landing task
        sc.activity.run(600, delete_share=0.05)
        sc.flush()
        before = {f"shardId-{i:012d}": _checkpoint_landed(sc, s3, f"shardId-{i:012d}") for i in range(SHARDS)}
        second = dep.trigger(LAND_DAG)
        victim, shards = None, []
        deadline = time.monotonic() + 300
        while victim is None and time.monotonic() < deadline:
            if not shards and dep.task_instances(LAND_DAG, second, "plan_shards")[0]["state"] == "success":
                shards = dep.planned_shards(second)
            for ti in dep.task_instances(LAND_DAG, second, "land_shard") if shards else []:
                shard = shards[int(ti["map_index"])]
                # Mid-task: running, and its shard's checkpoint already moved past a batch of this run.
                running = ti["state"] == "running" and ti.get("hostname")
                if running and _checkpoint_landed(sc, s3, shard) > before[shard]:
                    victim = ti
                    break
            else:
                time.sleep(0.3)
        assert victim is not None, "no landing task was caught in the middle of its shard"
        lost_worker = str(victim["hostname"])
        survivor = ({*worker_names(stack.cfg)} - {lost_worker}).pop()
        kill_machine(stack.celery.worker(lost_worker))
        killed_at, killed_utc = time.monotonic(), datetime.now(UTC)
        sc.figures.process_kills += 1

        # THEN Airflow notices the lost heartbeat, retries the task on the surviving worker, the run succeeds
        assert dep.wait_run(LAND_DAG, second, timeout=600) == "success"
        recovered_in = time.monotonic() - killed_at
        tries = dep.tries(LAND_DAG, second, "land_shard", int(victim["map_index"]))
        hosts = [(t["try_number"], t["hostname"], t["state"]) for t in sorted(tries, key=lambda t: t["try_number"])]
        assert hosts[0][1] == lost_worker and hosts[-1][1] == survivor and hosts[-1][2] == "success", hosts
        ordered = sorted(tries, key=lambda t: t["try_number"])
        failed_at = _when(ordered[0]["end_date"])
        retry_start, retry_end = _when(ordered[-1]["start_date"]), _when(ordered[-1]["end_date"])
        print(
            f"\nworker {lost_worker} killed mid-landing; task re-run on {survivor}: heartbeat loss seen after "
            f"{(failed_at - killed_utc).total_seconds():.0f} s, retry started "
            f"{(retry_start - failed_at).total_seconds():.0f} s later, ran "
            f"{(retry_end - retry_start).total_seconds():.0f} s; the run finished {recovered_in:.0f} s after the kill"
        )

        # ... and after the loader and one more landing run, the warehouse is exact: nothing lost or doubled
        dep.wait_loader_idle(after=loads)
        loads = dep.loader_runs()
        third = dep.trigger(LAND_DAG)
        assert dep.wait_run(LAND_DAG, third) == "success"
        if dep.task_instances(LAND_DAG, third, "publish_landed")[0]["state"] == "success":  # it landed something
            dep.wait_loader_idle(after=loads)
        sc.landing_read = sum(_checkpoint_landed(sc, s3, shard) for shard in before)
        sc.verify()

        # WHEN the reconciliation runs on a worker and someone opens the health page in the UI (the API server)
        assert stack.airflow.unpause((RECONCILE_DAG,)) == [RECONCILE_DAG]
        reconciled = dep.trigger(RECONCILE_DAG, {"sample_size": None, "settle_seconds": 0, "depth": "records"})
        assert dep.wait_run(RECONCILE_DAG, reconciled) == "success"
        # THEN it shows that verdict, computed from the warehouse and S3: the API server has no worker's disk
        health = dep.api("GET", "/cognito-streams/api/health")
        assert health["reconciliation"]["mismatches"] == 0 and health["last_load_at"], str(health)[:500]
        # ... and so are the task logs: a land_shard's log, written on a worker, read by the API server from S3
        log = dep.api("GET", f"/api/v2/dags/{LAND_DAG}/dagRuns/{first}/taskInstances/land_shard/logs/1?map_index=0")
        assert "landed" in json.dumps(log["content"]), str(log)[:500]

    # AND no process read a file that another machine wrote, or anything in another machine's own folder
    accesses = read_log(audit_log)
    own = {name: stack.celery.worker_dir(name) for name in worker_names(stack.cfg)}
    own["control-plane"] = stack.cfg.airflow_home
    assert violations(accesses, own) == []
    # (the audit saw each worker at work: its parser loaded from its own numba cache)
    for name in worker_names(stack.cfg):
        numba_dir = str(own[name] / "numba-cache")
        assert any(a.machine == name and a.kind == "r" and a.path.startswith(numba_dir) for a in accesses), name

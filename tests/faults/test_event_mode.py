"""Event mode through a real ``airflow standalone`` (scheduler, triggerer, LocalExecutor): the
triggerer is SIGKILLed and replaced, then a running ``land_shard`` task process is SIGKILLed; Airflow
retries it; nothing is lost (reconciled against Cognito Sync)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from local.procs import free_port
from local.stack import AirflowService, Stack, migrate_airflow, stack_environment
from tests.support.faults import Scenario, scenario
from tests.support.warehouse import connect

pytestmark = [pytest.mark.integration, pytest.mark.standalone]

LAND, LOAD = "cognito_stream_to_s3", "cognito_s3_to_redshift"


class EventModeAirflow:
    """``airflow standalone`` in event mode for one scenario, with its own home and port."""

    def __init__(self, stack: Stack, sc: Scenario, home: Path) -> None:
        self.cfg = replace(stack.cfg, state_dir=home, airflow_port=free_port(), extra_variable=sc.variable)
        for directory in (self.cfg.state_dir, self.cfg.log_dir, self.cfg.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.service = AirflowService(self.cfg)
        self.triggerers: list[subprocess.Popen[bytes]] = []

    def start(self, monkeypatch: pytest.MonkeyPatch, pool_id: str) -> None:
        # Its own metadata DB, not the test session's (the session's environment names one).
        monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{self.cfg.airflow_home / 'airflow.db'}")
        monkeypatch.delenv("AIRFLOW__CORE__UNIT_TEST_MODE", raising=False)
        monkeypatch.setenv("AIRFLOW__COGNITO_STREAMS__LANDING_MODE", "event")
        migrate_airflow(self.cfg, stack_environment(self.cfg, [pool_id]))
        self.service.ensure_running()
        self.service.unpause((LAND, LOAD))
        self.service.wait_for_watcher()

    def api(self, path: str) -> dict[str, Any]:
        return self.service._api("GET", path, None, self.service._token())

    def task_instances(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api(f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?limit=1000")["task_instances"])

    def stop(self) -> None:
        for proc in self.triggerers:
            _kill_tree(proc.pid, signal.SIGTERM)
        self.service.stop()

    # -- the triggerer ------------------------------------------------------------------------------------------
    def triggerer(self) -> psutil.Process:
        """The running ``airflow triggerer`` process (standalone's, or the one this test started)."""
        for proc in psutil.process_iter(["cmdline", "environ"]):
            try:
                cmd = proc.info["cmdline"] or []
                env = proc.info["environ"] or {}
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if cmd[-1:] == ["triggerer"] and env.get("AIRFLOW_HOME") == str(self.cfg.airflow_home):
                return proc
        raise AssertionError("no triggerer process of this Airflow is running")

    def kill_triggerer(self) -> dict[str, str]:
        """SIGKILL the triggerer and everything it started (its trigger runner); returns its environment."""
        proc = self.triggerer()
        env = dict(proc.environ())
        _kill_tree(proc.pid, signal.SIGKILL)
        return env

    def start_triggerer(self, env: dict[str, str]) -> None:
        # The new triggerer takes over the dead one's trigger once that one misses its heartbeats.
        env = {**env, "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10"}
        log = open(self.cfg.log_dir / "triggerer-2.log", "wb")  # noqa: SIM115 - kept open for the process
        self.triggerers.append(
            subprocess.Popen(["airflow", "triggerer"], env=env, stdout=log, stderr=subprocess.STDOUT)
        )


def _kill_tree(pid: int, sig: signal.Signals) -> None:
    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
    psutil.wait_procs(procs, timeout=20)


def loaded_changes(schema: str) -> int:
    with connect() as conn:
        try:
            row = conn.execute(f"select count(*) from {schema}.record_changes").fetchone()
        except Exception:
            return 0
    return int(row[0]) if row else 0


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


@pytest.fixture
def event_airflow(stack: Stack, tmp_path: Path) -> Iterator[Any]:
    made: list[EventModeAirflow] = []

    def make(sc: Scenario) -> EventModeAirflow:
        made.append(EventModeAirflow(stack, sc, tmp_path / "airflow-event"))
        return made[-1]

    try:
        yield make
    finally:
        for airflow in made:
            airflow.stop()


def test_event_mode_survives_a_triggerer_kill_and_a_landing_task_kill(
    stack: Stack, emulator: str, aws: Any, fault_tmp: Path, event_airflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = "SIGKILL triggerer, then a land_shard task (event mode, Airflow)"
    with scenario("event-mode-kills", fault, stack, aws, fault_tmp, shards=2, batch_max_records=3,
                  min_load_interval_seconds=2, seed=19) as sc:  # fmt: skip
        schema = sc.settings.warehouse_schema
        airflow = event_airflow(sc)
        airflow.start(monkeypatch, sc.pool_id)

        # GIVEN event mode running: changes land and load with no schedule
        sc.activity.run(10)
        sc.flush()
        wait_until(lambda: loaded_changes(schema) > 0, 240, "the first changes loaded in event mode")
        # ... with the stack's scheduler starting its task processes from the forkserver preload: a landing
        # task finds the decoder imported (cognito_streams/preload.py)
        logs = [p.read_text() for p in (airflow.cfg.airflow_home / "logs").rglob("task_id=land_shard/**/*.log")]
        assert logs and all("decoder preloaded: yes" in log for log in logs), logs[:1]

        # WHEN the triggerer dies (SIGKILL, with its trigger runner) and changes are made meanwhile
        env = airflow.kill_triggerer()
        sc.figures.process_kills += 1
        before = loaded_changes(schema)
        sc.activity.run(10)
        sc.flush()
        # ... THEN a new triggerer takes the watcher over and they land and load
        airflow.start_triggerer(env)
        sc.figures.service_restarts += 1
        wait_until(lambda: loaded_changes(schema) > before, 240, "changes loaded after the triggerer was replaced")

        # WHEN a land_shard task process is SIGKILLed while it runs (its lease is held, its batch maybe
        # half written): several bursts, until one kill lands on a running task
        killed: tuple[str, int] | None = None
        for _ in range(5):
            runs_before = {ti["dag_run_id"] for ti in airflow.task_instances(LAND)}
            sc.activity.run(12)
            sc.flush()
            deadline = time.monotonic() + 180
            while killed is None and time.monotonic() < deadline:
                for ti in airflow.task_instances(LAND):
                    if (
                        ti["task_id"] == "land_shard"
                        and ti["state"] == "running"
                        and ti["dag_run_id"] not in runs_before
                    ) and _kill_task_process(ti["id"]):
                        # A retry is a new task instance id in Airflow 3: follow the task by run and map index.
                        killed = (ti["dag_run_id"], int(ti["map_index"]))
                        sc.figures.process_kills += 1
                        break
                if any(
                    ti["dag_run_id"] not in runs_before
                    and ti["task_id"] == "check_shards"
                    and ti["state"] in ("success", "failed")
                    for ti in airflow.task_instances(LAND)
                ):
                    break  # that run ended before a kill could land: another burst
                time.sleep(0.2)
            if killed:
                break
        assert killed, "no running land_shard task process was found to kill"

        # THEN Airflow retries the killed task (same run: it takes its own lease back) and the run succeeds
        def retried() -> bool:
            for ti in airflow.task_instances(LAND):
                if ti["task_id"] == "land_shard" and (ti["dag_run_id"], int(ti["map_index"])) == killed:
                    return ti["state"] == "success" and int(ti["try_number"]) >= 2
            return False

        wait_until(retried, 300, f"the killed land_shard task {killed} retried to success")
        sc.figures.failed_task_runs += 1
        sc.activity.run(6)
        sc.flush()
        # ... and once the pipeline has caught up, nothing is lost or wrong
        made = sc.activity.changes

        def caught_up() -> bool:
            with connect() as conn:
                row = conn.execute(
                    f"select count(*) from {schema}.records where identity_pool_id = %s",
                    (sc.pool_id,),
                ).fetchone()
            return bool(row and row[0]) and sc.lost_changes() == []

        wait_until(caught_up, 300, f"all {made} changes loaded after the kills")
        sc.verify()


def _kill_task_process(ti_id: str) -> str | None:
    """SIGKILL the task process Airflow titled ``airflow worker -- <ti id>``; its id, or None if gone."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if f"airflow worker -- {ti_id}" in cmd:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return None
            return ti_id
    return None

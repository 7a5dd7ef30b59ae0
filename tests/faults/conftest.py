"""Fixtures of the fault suite, and its figures printed at the end of the run.

The figures (scenarios run, changes made, changes lost, wrong rows) also go to
``$CS_FAULT_FIGURES`` (a JSON file) when that variable is set, for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from local.faultproxy import FaultProxyControl
from local.procs import free_port, http_ok
from local.stack import REPO, Stack
from tests.support.faults import FIGURES


@pytest.fixture
def fault_tmp(tmp_path: Path) -> Path:
    """Where child processes' specs and logs go."""
    return tmp_path


class Proxy:
    """A ``local.faultproxy`` process in front of the session's moto."""

    def __init__(self, endpoint: str, control: FaultProxyControl, upstream: str) -> None:
        self.endpoint = endpoint
        self.control = control
        self.upstream = upstream


@pytest.fixture(scope="session")
def fault_proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """The fault-injecting proxy as its own process (forwarding everything until told otherwise)."""
    port, control_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("faultproxy") / "faultproxy.log"
    argv = [sys.executable, "-m", "local.faultproxy", "--upstream", stack.cfg.aws_endpoint]
    argv += ["--port", str(port), "--control-port", str(control_port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    control = FaultProxyControl(f"http://127.0.0.1:{control_port}")
    deadline = time.monotonic() + 20
    while not http_ok(f"http://127.0.0.1:{control_port}/health"):
        assert proc.poll() is None, f"the fault proxy exited: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the fault proxy did not answer within 20 s"
        time.sleep(0.05)
    try:
        yield Proxy(f"http://127.0.0.1:{port}", control, stack.cfg.aws_endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def through_proxy(fault_proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    """The pipeline (this process and its children) reaches AWS through the proxy, rules cleared."""
    fault_proxy.control.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.endpoint)
    try:
        yield fault_proxy
    finally:
        fault_proxy.control.reset()


@pytest.fixture(scope="session")
def pipeline_dags(airflow_db: None) -> dict[str, Any]:
    """The configure and bulk publish DAGs for ``dag.test()``, known to the metadata DB (configure
    triggers bulk publish), retries off (a scenario reruns by itself, at once)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    out = {}
    for dag_id in ("cognito_streams_configure", "cognito_bulk_publish"):
        bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
        assert bag.import_errors == {}
        sync_bag_to_db(bag, "dags-folder", None)
        dag = bag.get_dag(dag_id)
        for task in dag.tasks:
            task.retries = 0
        out[dag_id] = dag
    return out


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns = [
        ("scenario", "scenario"), ("changes_made", "changes"), ("kinesis_records_read", "read"),
        ("process_kills", "kills"), ("service_restarts", "restarts"), ("faults_injected", "faults"),
        ("failed_task_runs", "failed runs"), ("keys_checked", "keys checked"), ("changes_lost", "LOST"),
        ("wrong_rows", "WRONG"), ("seconds", "s"),
    ]  # fmt: skip
    widths = [max(len(title), *(len(str(r[name])) for r in rows)) for name, title in columns]
    lines = ["  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True))]
    for r in rows:
        lines.append("  ".join(str(r[name]).ljust(w) for (name, _), w in zip(columns, widths, strict=True)))
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's figures: every scenario must end with 0 lost and 0 wrong."""
    if not FIGURES:
        return
    rows = [asdict(f) for f in FIGURES]
    tr = terminalreporter
    tr.section("fault injection figures")
    for line in _table(rows):
        tr.write_line(line)
    totals = {
        "scenarios": len(rows),
        "changes_made": sum(r["changes_made"] for r in rows),
        "process_kills": sum(r["process_kills"] for r in rows),
        "service_restarts": sum(r["service_restarts"] for r in rows),
        "faults_injected": sum(r["faults_injected"] for r in rows),
        "changes_lost": sum(r["changes_lost"] for r in rows),
        "wrong_rows": sum(r["wrong_rows"] for r in rows),
    }
    tr.write_line(
        f"total: {totals['scenarios']} scenario(s), {totals['changes_made']} changes made, "
        f"{totals['process_kills']} SIGKILLs, {totals['service_restarts']} service restarts, "
        f"{totals['faults_injected']} injected AWS faults; changes lost {totals['changes_lost']}, "
        f"wrong rows {totals['wrong_rows']}"
    )
    target = os.environ.get("CS_FAULT_FIGURES")
    if target:
        Path(target).write_text(json.dumps({"totals": totals, "scenarios": rows}, indent=1))

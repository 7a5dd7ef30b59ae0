"""The Celery setup's pieces that need no running Airflow: its settings, the environment of each "machine",
the task-instance hostname, and the file audit that proves no task reads another worker's files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.celery_stack import CeleryAirflow, celery_environment, worker_names
from local.fileaudit import SITE_DIR, Access, read_log, violations
from local.procs import StackError
from local.stack import REPO, StackConfig, stack_environment


def test_cs_executor_chooses_the_celery_setup_and_a_wrong_value_is_named() -> None:
    cfg = StackConfig.from_env({"CS_EXECUTOR": "celery", "CS_BROKER_PORT": "46001", "CS_CELERY_WORKERS": "3"})
    assert (cfg.executor, cfg.broker_port, cfg.celery_workers) == ("celery", 46001, 3)
    assert StackConfig.from_env({}).executor == "local"
    with pytest.raises(StackError, match=r"CS_EXECUTOR='kubernetes'.*local, celery"):
        StackConfig.from_env({"CS_EXECUTOR": "kubernetes"})
    with pytest.raises(StackError, match="CS_BROKER_PORT"):
        StackConfig.from_env({"CS_BROKER_PORT": "redis"})


def test_stack_env_puts_airflow_on_postgresql_and_celery_only_in_celery_mode(tmp_path: Path) -> None:
    local = stack_environment(StackConfig(state_dir=tmp_path), pool_ids=[])
    assert "AIRFLOW__CORE__EXECUTOR" not in local and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in local
    cfg = StackConfig(state_dir=tmp_path, executor="celery", pg_port=45999, broker_port=46000)
    env = stack_environment(cfg, pool_ids=[])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # The metadata DB and Celery's result backend: databases of their own on the stack's PostgreSQL, not SQLite
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://postgres@127.0.0.1:45999/airflow"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://postgres@127.0.0.1:45999/airflow_celery"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:46000/0"
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "local.hostname.machine_name"
    assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) < 300
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith(f"s3://{cfg.landing_bucket}/")
    assert celery_environment(cfg).items() <= env.items()


def test_each_worker_is_a_machine_of_its_own(tmp_path: Path) -> None:
    cfg = StackConfig(state_dir=tmp_path, executor="celery")
    airflow = CeleryAirflow(cfg)
    assert worker_names(cfg) == ["worker-1", "worker-2"]
    one, two = (airflow.worker_env(name) for name in worker_names(cfg))
    for key in ("CS_MACHINE_NAME", "AIRFLOW_HOME", "TMPDIR", "NUMBA_CACHE_DIR"):
        assert one[key] != two[key], key
    for env, name in ((one, "worker-1"), (two, "worker-2")):
        folder = airflow.worker_dir(name)
        assert all(Path(env[k]).is_relative_to(folder) for k in ("AIRFLOW_HOME", "TMPDIR", "NUMBA_CACHE_DIR"))
        # The report goes to S3 only: no folder of one process for another to read
        assert "COGNITO_STREAMS_REPORT_DIR" not in env
    # The shared keys are the same everywhere (a task token signed by the API server is valid on every worker)
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
        assert one[key] == two[key] == airflow.base_env()[key]
    commands = [p.argv[1:] for p in airflow.workers()]
    assert commands[0][:4] == ["celery", "worker", "--celery-hostname", "worker-1"]


def test_the_task_hostname_is_the_machine_name() -> None:
    code = "from local.hostname import machine_name; print(machine_name())"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CS_MACHINE_NAME": "worker-2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "worker-2"
    # And Airflow uses it: the callable is what [core] hostname_callable names
    env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "local.hostname.machine_name"
    code = "from airflow.sdk.api.client import get_hostname; print(get_hostname())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "worker-2"


def _as_machine(name: str, code: str, root: Path, log: Path) -> None:
    """Run ``code`` in a new interpreter as machine ``name``, its file access audited under ``root``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SITE_DIR), str(REPO)]),
        "CS_FILE_AUDIT": str(log),
        "CS_FILE_AUDIT_ROOT": str(root),
        "CS_MACHINE_NAME": name,
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=root)


def test_the_audit_catches_a_task_reading_a_file_another_worker_wrote(tmp_path: Path) -> None:
    # GIVEN two "machines" with folders of their own, and a shared folder both can reach
    own = {"worker-1": tmp_path / "w1", "worker-2": tmp_path / "w2"}
    for folder in [*own.values(), tmp_path / "shared"]:
        folder.mkdir()
    log = tmp_path / "audit.log"
    # WHEN worker-1 writes a file (in place, and one by rename as numba does) that worker-2 then reads
    _as_machine(
        "worker-1",
        "import os; open('shared/handoff.json', 'w').write('{}'); open('w1/t', 'w').write('x'); "
        "os.replace('w1/t', 'w1/cache.nbi')",
        tmp_path,
        log,
    )
    _as_machine("worker-2", "open('shared/handoff.json').read(); os_ = __import__('os'); os_.open('w1/cache.nbi', 0)",
                tmp_path, log)  # fmt: skip
    # ... and each reads its own files, which is fine
    _as_machine("worker-1", "open('w1/cache.nbi').read()", tmp_path, log)
    # THEN the audit names both cross-machine reads, and nothing else
    found = violations(read_log(log), own)
    assert len(found) == 3, found
    assert any("worker-2" in v and "shared/handoff.json" in v and "written by worker-1 only" in v for v in found)
    assert any("worker-2" in v and "w1/cache.nbi" in v and "written by worker-1 only" in v for v in found)
    assert any("worker-2" in v and "w1/cache.nbi" in v and "worker-1's own folder" in v for v in found)


def test_the_audit_allows_reading_what_no_worker_wrote_and_ones_own_files() -> None:
    own = {"worker-1": Path("/s/w1"), "worker-2": Path("/s/w2")}
    accesses = [
        Access("worker-1", 1, "r", "/s/airflow/stack.env"),  # written before: by the installer
        Access("worker-2", 2, "r", "/s/airflow/stack.env"),
        Access("worker-1", 1, "w", "/s/w1/tmp/x"),
        Access("worker-1", 3, "r", "/s/w1/tmp/x"),  # another process of the same machine
        Access("control-plane", 4, "w", "/s/airflow/logs/a.log"),
        Access("control-plane", 4, "r", "/s/airflow/logs/a.log"),
    ]
    assert violations(accesses, own) == []
    # a file the control plane wrote, read by a worker: a hand-off through a disk they would not share
    assert violations([*accesses, Access("worker-2", 5, "r", "/s/airflow/logs/a.log")], own) == [
        "worker-2 (pid 5) read /s/airflow/logs/a.log, written by control-plane only"
    ]

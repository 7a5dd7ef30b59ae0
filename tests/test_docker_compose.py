"""docker-compose.yml stays valid (no Docker engine here: `docker compose config` only parses)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import compose
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_BIN = Path(compose.__file__).parent / "docker-compose"


def _config(
    *extra: str, files: tuple[str, ...] = ("docker-compose.yml",), profiles: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    options = [a for f in files for a in ("-f", str(REPO / f))] + [a for p in profiles for a in ("--profile", p)]
    return subprocess.run(
        [str(COMPOSE_BIN), *options, "config", *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_compose_file_is_valid() -> None:
    proc = _config("-q")
    assert proc.returncode == 0, proc.stderr


def test_compose_runs_the_whole_stack_with_healthchecks() -> None:
    proc = _config()
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    expected = {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-metadata-db",
        "warehouse",
        "moto",
        "cognito-sync-emulator",
        "redis",
        "airflow-worker",
    }
    assert expected <= set(services)
    for name in ("airflow-metadata-db", "warehouse", "moto", "cognito-sync-emulator", "airflow-apiserver", "redis"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ):
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"
        assert all(d["condition"] in {"service_healthy", "service_completed_successfully"} for d in deps.values())


def test_compose_runs_celery_with_two_workers_like_airflows_official_compose() -> None:
    proc = _config()
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    airflow = [n for n in services if n.startswith("airflow-") and n not in ("airflow-metadata-db",)]
    for name in airflow:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
            and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        )
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
        # No worker's disk is shared: task logs go to S3 and no service mounts a logs folder.
        assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "true"
        assert not any("logs" in str(v) for v in services[name].get("volumes", [])), name
    worker = services["airflow-worker"]
    assert worker["command"] == ["celery", "worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "inspect ping" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # Flower only when asked for (its profile)
    assert services.get("flower") is None
    flower = _config(profiles=("flower",))
    assert flower.returncode == 0, flower.stderr
    assert yaml.safe_load(flower.stdout)["services"]["flower"]["command"] == ["celery", "flower"]


def test_the_local_executor_override_is_valid_and_starts_no_worker() -> None:
    files = ("docker-compose.yml", "docker-compose.local-executor.yml")
    proc = _config(files=files)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-init",
    ):
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
    assert services["airflow-worker"]["deploy"]["replicas"] == 0
    # the scheduler's executor workers start from a forkserver with the tasks' modules imported
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert scheduler["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] == "airflow,cognito_streams.preload"

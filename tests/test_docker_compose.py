"""docker-compose.yml stays valid (no Docker engine here: `docker compose config` only parses)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import compose
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_BIN = Path(compose.__file__).parent / "docker-compose"


def _config(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMPOSE_BIN), "-f", str(REPO / "docker-compose.yml"), "config", *extra],
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
    }
    assert expected <= set(services)
    for name in ("airflow-metadata-db", "warehouse", "moto", "cognito-sync-emulator", "airflow-apiserver"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"
        assert all(d["condition"] in {"service_healthy", "service_completed_successfully"} for d in deps.values())

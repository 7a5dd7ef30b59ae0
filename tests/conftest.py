"""Shared fixtures: an isolated Airflow home, and the local stack on free ports.

Airflow reads its configuration at import time, so the environment is set here, before any test
module imports it. Nothing in the tests touches ``.local/`` or the default ports: a developer's
running stack and the test suite never meet.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cs-airflow-home-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
)
# Never let a test reach a real AWS account or a developer's stack by accident.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_COGNITO_SYNC"):
    os.environ.pop(_var, None)

from local.procs import free_port  # noqa: E402
from local.stack import Stack, StackConfig  # noqa: E402


def make_stack_config(state_dir: Path, **overrides: object) -> StackConfig:
    """A stack config on fresh free ports in ``state_dir`` (for tests that need their own stack)."""
    values: dict[str, object] = {
        "state_dir": state_dir,
        "moto_port": free_port(),
        "emulator_port": free_port(),
        "pg_port": free_port(),
        "airflow_port": free_port(),
        # Tests load again and again within seconds: the loader's pause between loads
        # (min_load_interval_seconds, default 10) would only slow them; tests of it set it themselves.
        "extra_variable": {"min_load_interval_seconds": 0},
    }
    values.update(overrides)
    return StackConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """moto and PostgreSQL for the whole session, with the stack's variables exported to this
    process (AWS endpoints, credentials, ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_COGNITO_PIPELINE``).
    The Cognito Sync emulator is started only by tests that ask for the ``emulator`` fixture."""
    cfg = make_stack_config(tmp_path_factory.mktemp("stack"))
    st = Stack(cfg)
    env = st.up(migrate=False, emulator=False)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if not k.startswith("AIRFLOW__CORE__") and k != "AIRFLOW_HOME"})
    try:
        yield st
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        st.down()


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh Airflow metadata DB (SQLite, in the session's temporary AIRFLOW_HOME)."""
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="session")
def emulator(stack: Stack) -> str:
    """The Cognito Sync emulator on the session stack; returns its endpoint URL."""
    stack.emulator.ensure_running()
    return stack.cfg.emulator_endpoint


@pytest.fixture(scope="session")
def aws(stack: Stack):  # type: ignore[no-untyped-def]
    """``aws("s3")``: a boto3 client for the session stack (cognito-sync goes to the emulator)."""
    import boto3

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

"""Shared fixtures: an isolated Airflow home, and the local stack on free ports.

Airflow reads its configuration at import time, so the environment is set here, before any test
module imports it. Nothing in the tests touches ``.local/`` or the default ports: a developer's
running stack and the test suite never meet.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
        "redshift_port": free_port(),
        "airflow_port": free_port(),
        "broker_port": free_port(),
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
    try:
        env = st.up(migrate=False, emulator=False, redshift=False)
    except BaseException:
        st.down()  # what started before the failure must not outlive the session
        raise
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


@dataclass(frozen=True)
class RedshiftEndpoint:
    """Where the session's Redshift emulator listens and how to log in (database ``dev``)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self, **kwargs: Any) -> Any:
        """A redshift-connector connection (plain TCP: the emulator has no TLS)."""
        import redshift_connector

        return redshift_connector.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, database=self.database,
            ssl=False, **kwargs,
        )  # fmt: skip

    @property
    def dsn(self) -> str:
        """libpq DSN (psycopg and other PostgreSQL clients)."""
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={self.database} "
            "sslmode=disable"
        )


@pytest.fixture(scope="session")
def redshift_emulator(stack: Stack) -> RedshiftEndpoint:
    """The Redshift emulator on the session stack (started on first use, stopped with the stack)."""
    from local.stack import REDSHIFT_DB, REDSHIFT_PASSWORD, REDSHIFT_USER

    stack.redshift.ensure_running()
    return RedshiftEndpoint(stack.cfg.host, stack.cfg.redshift_port, REDSHIFT_USER, REDSHIFT_PASSWORD, REDSHIFT_DB)


#: The warehouses the pipeline runs on in the suite: the plain PostgreSQL stand-in and the Redshift emulator (the
#: Redshift path: redshift-connector through RedshiftSQLHook, server-side COPY from S3). Also the test ids.
WAREHOUSES = ("postgres", "redshift")


@contextmanager
def warehouse_env(stack: Stack, warehouse: str) -> Iterator[str]:
    """Point the pipeline's ``redshift_default`` at ``warehouse`` (``postgres`` or ``redshift``) for the block, as
    ``CS_WAREHOUSE`` does for the stack: the connection the DAGs and ``open_warehouse`` read, and ``CS_WAREHOUSE``,
    which ``tests.support.warehouse.connect()`` follows to reach the same database directly. Child processes started
    in the block inherit both. Starts the Redshift emulator when it is asked for."""
    from local.stack import warehouse_connection

    if warehouse == "redshift":
        stack.redshift.ensure_running()
    conn = warehouse_connection(replace(stack.cfg, warehouse=warehouse))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_REDSHIFT_DEFAULT", json.dumps(conn))
        mp.setenv("CS_WAREHOUSE", warehouse)
        yield warehouse


@pytest.fixture(params=WAREHOUSES)
def warehouse_engine(request: pytest.FixtureRequest, stack: Stack) -> Iterator[str]:
    """Runs the test once per warehouse (ids ``postgres``, ``redshift``), the pipeline's connection pointed at it
    (:func:`warehouse_env`). Module-scoped fixtures use :func:`warehouse_env` with their own ``params``."""
    with warehouse_env(stack, request.param) as warehouse:
        yield warehouse


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

"""The local stack: moto (S3, Kinesis, IAM, STS, Cognito Identity), the Cognito Sync emulator and
PostgreSQL 16 (from the ``pgserver`` wheel), started in the background with pid files and logs
under ``.local/``; optionally ``airflow standalone`` on top for the UI.

Usage (the Makefile wraps these)::

    python -m local.stack up            # start everything, write .local/stack.env, migrate Airflow's DB
    python -m local.stack down          # stop everything we started
    python -m local.stack status
    python -m local.stack airflow-up    # airflow standalone with our DAGs (after ``up``)
    python -m local.stack airflow-down

Ports and the state folder are settings (environment variables), so a second stack or a busy
port never needs a code change: ``CS_MOTO_PORT``, ``CS_EMULATOR_PORT``, ``CS_PG_PORT``,
``CS_AIRFLOW_PORT``, ``CS_REDSHIFT_PORT``, ``CS_STATE_DIR``. ``CS_WAREHOUSE`` (``postgres``, the default, or
``redshift``) decides which warehouse the ``redshift_default`` connection in ``stack.env`` points at: the plain
PostgreSQL stand-in, or the Redshift emulator (``local/redshift``, docs/redshift-emulator.md) in front of it.
``CS_EXECUTOR=celery`` runs Airflow on the CeleryExecutor instead of ``airflow standalone``: Redis as the broker
(``CS_BROKER_PORT``), ``CS_CELERY_WORKERS`` workers, each as if on its own machine (``local/celery_stack.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from local.procs import (
    StackError,
    http_ok,
    port_is_free,
    port_is_listening,
    read_pid,
    start_detached,
    stop_process_group,
    wait_until,
)

REPO = Path(__file__).resolve().parents[1]

#: moto's fixed account id; ARNs in the local settings use it.
LOCAL_ACCOUNT_ID = "123456789012"
#: ``cognito_streams.core.configure.iam.DEFAULT_BOUNDARY_NAME`` (the stack runs without ``plugins/`` on its path).
PUBLISH_BOUNDARY_NAME = "cognito-streams-publish-boundary"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

WAREHOUSE_DB = "warehouse"
#: The Redshift emulator's database, user and password (its own database on the stack's PostgreSQL).
REDSHIFT_DB = "dev"
REDSHIFT_USER = "awsuser"
REDSHIFT_PASSWORD = "Emulator-Passw0rd"  # noqa: S105 - the local emulator's documented password
WAREHOUSES = ("postgres", "redshift")
EXECUTORS = ("local", "celery")
COPY_ROLE_NAME = "cognito-streams-redshift-copy"
PG_SYSTEM_USER = "pgserver"  # pgserver's convention: PostgreSQL refuses to run as root


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which ports it uses; ``from_env`` reads the ``CS_*`` settings."""

    state_dir: Path = REPO / ".local"
    host: str = "127.0.0.1"
    moto_port: int = 45660
    emulator_port: int = 45661
    pg_port: int = 45662
    redshift_port: int = 45663
    airflow_port: int = 45680
    #: which warehouse ``redshift_default`` points at: the PostgreSQL stand-in or the Redshift emulator
    warehouse: str = "postgres"
    region: str = "us-east-1"
    landing_bucket: str = "cognito-streams-landing"
    stream_name: str = "cognito-sync-stream"
    stream_shards: int = 2
    pool_names: tuple[str, ...] = ("cognito_streams_demo",)
    airflow_parallelism: int = 4
    #: ``local``: ``airflow standalone`` (LocalExecutor); ``celery``: Airflow component by component on the
    #: CeleryExecutor with a Redis broker and ``celery_workers`` workers (local/celery_stack.py)
    executor: str = "local"
    broker_port: int = 45664
    celery_workers: int = 2
    worker_concurrency: int = 2
    #: ``[scheduler] task_instance_heartbeat_timeout`` of the Celery setup (Airflow's default: 300 s)
    heartbeat_timeout: int = 60
    extra_variable: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackConfig:
        """Defaults overridden by ``CS_*`` environment variables (invalid numbers are named)."""
        env = dict(os.environ if env is None else env)
        cfg = cls()
        ints = {
            "CS_MOTO_PORT": "moto_port",
            "CS_EMULATOR_PORT": "emulator_port",
            "CS_PG_PORT": "pg_port",
            "CS_REDSHIFT_PORT": "redshift_port",
            "CS_AIRFLOW_PORT": "airflow_port",
            "CS_STREAM_SHARDS": "stream_shards",
            "CS_BROKER_PORT": "broker_port",
            "CS_CELERY_WORKERS": "celery_workers",
            "CS_WORKER_CONCURRENCY": "worker_concurrency",
            "CS_HEARTBEAT_TIMEOUT": "heartbeat_timeout",
        }
        changes: dict[str, object] = {}
        for var, attr in ints.items():
            if env.get(var):
                try:
                    changes[attr] = int(env[var])
                except ValueError:
                    raise StackError(f"{var}={env[var]!r} is not a number; give a TCP port such as 45670") from None
        if env.get("CS_STATE_DIR"):
            changes["state_dir"] = Path(env["CS_STATE_DIR"]).resolve()
        if env.get("CS_WAREHOUSE"):
            changes["warehouse"] = env["CS_WAREHOUSE"]
        if env.get("CS_EXECUTOR"):
            changes["executor"] = env["CS_EXECUTOR"]
        return replace(cfg, **changes)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.warehouse not in WAREHOUSES:
            raise StackError(
                f"CS_WAREHOUSE={self.warehouse!r} is not a warehouse of the local stack; use one of "
                f"{', '.join(WAREHOUSES)} (postgres: the plain PostgreSQL stand-in, redshift: the Redshift emulator)"
            )
        if self.executor not in EXECUTORS:
            raise StackError(
                f"CS_EXECUTOR={self.executor!r} is not an executor of the local stack; use one of "
                f"{', '.join(EXECUTORS)} (local: airflow standalone with the LocalExecutor, "
                "celery: the CeleryExecutor with two workers)"
            )

    # Derived locations -------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def pgdata(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "stack.env"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    @property
    def emulator_endpoint(self) -> str:
        return f"http://{self.host}:{self.emulator_port}"

    def warehouse_dsn(self) -> str:
        """libpq DSN of the warehouse database."""
        return f"host={self.host} port={self.pg_port} user=postgres dbname={WAREHOUSE_DB}"

    def redshift_dsn(self) -> str:
        """libpq DSN of the Redshift emulator (psycopg and other PostgreSQL clients)."""
        return (
            f"host={self.host} port={self.redshift_port} user={REDSHIFT_USER} password={REDSHIFT_PASSWORD} "
            f"dbname={REDSHIFT_DB} sslmode=disable"
        )


def _python() -> str:
    return sys.executable


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class Service:
    """One background process of the stack."""

    name: str = ""
    port_setting: str = ""

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def pid_file(self) -> Path:
        return self.cfg.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.cfg.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def healthy(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_process_group(pid)
        self.pid_file.unlink(missing_ok=True)

    def check_port(self) -> None:
        """Fail clearly when another program holds our port."""
        if not port_is_free(self.port, self.cfg.host):
            raise StackError(
                f"port {self.port} ({self.name}) is already in use by another program; "
                f"stop that program or choose another port with {self.port_setting}=<port>, "
                f"for example `{self.port_setting}={self.port + 100} make stack-up`"
            )

    def ensure_running(self) -> str:
        """Start unless ours is already running and healthy; return what happened."""
        if self.pid() is not None and self.healthy():
            return "already running"
        if self.pid() is not None:  # ours but not answering: restart it cleanly
            self.stop()
        self.check_port()
        self.start()
        return "started"


class MotoService(Service):
    """moto in server mode: S3, Kinesis, IAM, STS, Cognito Identity on one port."""

    name = "moto"
    port_setting = "CS_MOTO_PORT"

    @property
    def port(self) -> int:
        return self.cfg.moto_port

    def healthy(self) -> bool:
        return http_ok(f"{self.cfg.aws_endpoint}/moto-api/data.json", timeout=2.0)

    def start(self) -> None:
        argv = [_python(), "-m", "moto.server", "-H", self.cfg.host, "-p", str(self.port)]
        pid = start_detached(argv, pid_file=self.pid_file, log_file=self.log_file, env=_child_env(self.cfg))
        wait_until(self.healthy, timeout=30, what=f"moto server on port {self.port}", log=self.log_file, pid=pid)


class EmulatorService(Service):
    """The Cognito Sync emulator (``local/emulator``), talking to moto for Kinesis, S3 and IAM."""

    name = "emulator"
    port_setting = "CS_EMULATOR_PORT"

    @staticmethod
    def available() -> bool:
        return (REPO / "local" / "emulator" / "__main__.py").exists()

    @property
    def port(self) -> int:
        return self.cfg.emulator_port

    def healthy(self) -> bool:
        return http_ok(f"{self.cfg.emulator_endpoint}/_emulator/health", timeout=2.0)

    def start(self) -> None:
        argv = [
            _python(),
            "-m",
            "local.emulator",
            "--host",
            self.cfg.host,
            "--port",
            str(self.port),
            "--state-dir",
            str(self.cfg.state_dir / "emulator"),
            "--aws-endpoint",
            self.cfg.aws_endpoint,
            "--region",
            self.cfg.region,
        ]
        pid = start_detached(argv, pid_file=self.pid_file, log_file=self.log_file, env=_child_env(self.cfg), cwd=REPO)
        wait_until(
            self.healthy, timeout=30, what=f"Cognito Sync emulator on port {self.port}", log=self.log_file, pid=pid
        )


class PostgresService(Service):
    """PostgreSQL 16 from the pgserver wheel, on TCP loopback only, trust auth, database ``warehouse``."""

    name = "postgres"
    port_setting = "CS_PG_PORT"

    @property
    def port(self) -> int:
        return self.cfg.pg_port

    @property
    def log_file(self) -> Path:
        # Written by the postgres user, so it lives inside PGDATA; stack logs link to it.
        return self.cfg.pgdata / "postgres.log"

    def pid(self) -> int | None:
        pid_file = self.cfg.pgdata / "postmaster.pid"
        return read_pid(pid_file)

    def healthy(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self._dsn("postgres"), connect_timeout=2) as conn:
                conn.execute("select 1")
        except psycopg.Error:
            return False
        return True

    def _dsn(self, dbname: str) -> str:
        return f"host={self.cfg.host} port={self.port} user=postgres dbname={dbname}"

    def _run_as(self) -> str | None:
        """The system user PostgreSQL runs as: ``pgserver`` when we are root, else ourselves."""
        if os.name == "posix" and os.geteuid() == 0:
            return PG_SYSTEM_USER
        return None

    def _prepare_root(self) -> None:
        """As root, PostgreSQL must run as another user: create it and let it reach our files."""
        if not self._run_as():
            return
        import pwd

        bin_dir = _pg_bin_path()
        from pgserver.utils import (  # type: ignore[attr-defined]  # posix-only names
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_SYSTEM_USER)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.cfg.pgdata)
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        os.chown(self.cfg.pgdata, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        bin_dir = _pg_bin_path()

        self.cfg.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_root()
        if not (self.cfg.pgdata / "PG_VERSION").exists():
            subprocess.run(  # noqa: S603
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.cfg.pgdata),
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                check=True,
                capture_output=True,
                user=self._run_as(),
                group=self._run_as(),
            )
        options = f"-h {self.cfg.host} -p {self.port} -c unix_socket_directories='' -c max_connections=200"
        proc = subprocess.run(  # noqa: S603
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.cfg.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
            user=self._run_as(),
            group=self._run_as(),
        )
        if proc.returncode != 0:
            raise StackError(f"PostgreSQL failed to start: {proc.stderr.strip()}; see its log: {self.log_file}")
        wait_until(self.healthy, timeout=30, what=f"PostgreSQL on port {self.port}", log=self.log_file)
        self._ensure_database()
        link = self.cfg.log_dir / "postgres.log"
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if not link.is_symlink():
                link.symlink_to(self.log_file)

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (WAREHOUSE_DB,)).fetchone()
            if not exists:
                conn.execute(f'create database "{WAREHOUSE_DB}"')

    def ensure_running(self) -> str:
        state = super().ensure_running()
        self._ensure_database()
        return state

    def stop(self) -> None:
        if self.pid() is None:
            return
        bin_dir = _pg_bin_path()

        subprocess.run(  # noqa: S603
            [str(bin_dir / "pg_ctl"), "-D", str(self.cfg.pgdata), "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True,
            check=False,
            user=self._run_as(),
            group=self._run_as(),
        )
        pid = self.pid()
        if pid is not None:
            stop_process_group(pid)


class RedshiftEmulatorService(Service):
    """The Redshift emulator (``local/redshift``): the PostgreSQL wire protocol in front of the stack's
    PostgreSQL, in a database of its own, refusing what Redshift refuses; COPY reads the stack's S3 (moto)."""

    name = "redshift"
    port_setting = "CS_REDSHIFT_PORT"

    @property
    def port(self) -> int:
        return self.cfg.redshift_port

    def healthy(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.cfg.redshift_dsn(), connect_timeout=2, autocommit=True) as conn:
                conn.execute("select 1")
        except psycopg.Error:
            return False
        return True

    def start(self) -> None:
        argv = [
            _python(),
            "-m",
            "local.redshift",
            "--host",
            self.cfg.host,
            "--port",
            str(self.port),
            "--pg-host",
            self.cfg.host,
            "--pg-port",
            str(self.cfg.pg_port),
            "--database",
            REDSHIFT_DB,
            "--user",
            REDSHIFT_USER,
            "--password",
            REDSHIFT_PASSWORD,
            "--aws-endpoint",
            self.cfg.aws_endpoint,
            "--region",
            self.cfg.region,
        ]
        pid = start_detached(argv, pid_file=self.pid_file, log_file=self.log_file, env=_child_env(self.cfg), cwd=REPO)
        wait_until(self.healthy, timeout=60, what=f"Redshift emulator on port {self.port}", log=self.log_file, pid=pid)


#: Airflow settings for a short critical path in event mode (docs/operations.md, "Freshness: Airflow's
#: settings"): the scheduler sleeps at most this long between loops that found nothing to do, so a finished
#: task's successor, an asset-triggered run and the landing run a watcher event asked for start within a
#: quarter of a second instead of up to one (each change passes about six such hops). It costs the idle
#: scheduler up to four times as many (cheap) loops: docs/operations.md. Environment variables set by the
#: caller win.
LOW_LATENCY_AIRFLOW = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
}

#: The scheduler's LocalExecutor starts its workers from a forkserver that imported the tasks' modules (the
#: decoder, the hooks, the warehouse drivers) once: each task process forked by a worker inherits them
#: instead of importing them on its start (cognito_streams/preload.py; docs/operations.md). LocalExecutor only:
#: Celery workers fork their tasks themselves.
PRELOADED_LOCAL_WORKERS = {
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "airflow,cognito_streams.preload",
}


class AirflowService(Service):
    """``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) on SQLite."""

    name = "airflow"
    port_setting = "CS_AIRFLOW_PORT"

    @property
    def port(self) -> int:
        return self.cfg.airflow_port

    def healthy(self) -> bool:
        url = f"http://{self.cfg.host}:{self.port}/api/v2/monitor/health"
        try:
            import urllib.request

            with urllib.request.urlopen(url, timeout=2) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError):
            return False
        return all(body.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler"))

    def start(self) -> None:
        env = {**_child_env(self.cfg), **stack_environment(self.cfg)}
        env["AIRFLOW__API__PORT"] = str(self.port)
        env["AIRFLOW__API__HOST"] = self.cfg.host
        # Workers reach the task Execution API on the api-server; its default URL assumes port 8080.
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{self.cfg.host}:{self.port}/execution/"
        env["AIRFLOW__CORE__PARALLELISM"] = str(self.cfg.airflow_parallelism)
        # Lively for the UI: land as records arrive (event mode: the watcher in the triggerer starts a
        # landing run per burst); in schedule mode, every minute (the production default is 5 minutes).
        env.setdefault("AIRFLOW__COGNITO_STREAMS__LANDING_MODE", "event")
        env.setdefault("AIRFLOW__COGNITO_STREAMS__LANDING_SCHEDULE", "* * * * *")
        # The stall check every minute too (production default: every 2 minutes).
        env.setdefault("AIRFLOW__COGNITO_STREAMS__HEALTH_SCHEDULE", "* * * * *")
        env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "30"
        for key, value in {**LOW_LATENCY_AIRFLOW, **PRELOADED_LOCAL_WORKERS}.items():
            env.setdefault(key, value)
        argv = [_venv_bin("airflow"), "standalone"]
        pid = start_detached(argv, pid_file=self.pid_file, log_file=self.log_file, env=env, cwd=REPO)
        wait_until(
            self.healthy, timeout=180, what=f"Airflow standalone on port {self.port}", log=self.log_file, pid=pid
        )

    def _api(self, method: str, path: str, body: dict[str, object] | None, token: str | None) -> dict[str, object]:
        import urllib.request

        request = urllib.request.Request(
            f"http://{self.cfg.host}:{self.port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            return dict(json.loads(resp.read() or b"{}"))

    def _token(self) -> str:
        password = self.admin_password()
        if password is None:
            raise StackError(f"no admin password found under {self.cfg.airflow_home}")
        return str(self._api("POST", "/auth/token", {"username": "admin", "password": password}, None)["access_token"])

    def wait_for_first_run(self, dag_id: str, timeout: float = 300.0) -> str:
        """Wait until the DAG's latest run has finished; return its state."""
        token = self._token()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                runs = self._api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=1&order_by=-run_after", None, token)
            except TimeoutError:  # a busy machine: the api-server answers late; ask again
                time.sleep(2)
                continue
            latest = (runs.get("dag_runs") or [None])[0]  # type: ignore[index]
            if isinstance(latest, dict) and latest.get("state") in ("success", "failed"):
                return str(latest["state"])
            time.sleep(2)
        raise StackError(f"{dag_id}'s first run did not finish within {timeout:.0f} s; see the Airflow UI")

    def unpause(self, dag_ids: tuple[str, ...], timeout: float = 120.0) -> list[str]:
        """Unpause our DAGs through the REST API once the dag-processor has parsed them."""
        token = self._token()
        pending, done = list(dag_ids), []
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for dag_id in list(pending):
                try:
                    self._api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
                except OSError:  # 404 until the dag-processor has parsed the file
                    continue
                pending.remove(dag_id)
                done.append(dag_id)
            if pending:
                time.sleep(2)
        if pending:
            raise StackError(
                f"Airflow did not list {', '.join(pending)} within {timeout:.0f} s; see {self.log_file} "
                "and the UI's DAG import errors"
            )
        return done

    def wait_for_watcher(self, asset_name: str = "cognito_streams_records_waiting", timeout: float = 180.0) -> None:
        """Wait until the dag-processor registered the asset's watcher (it does at the first parse after the
        DAG is unpaused); the triggerer starts it within a few seconds after that."""
        token = self._token()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._api("GET", f"/api/v2/assets?name_pattern={asset_name}", None, token)
            assets = found.get("assets")
            if isinstance(assets, list) and any(isinstance(a, dict) and a.get("watchers") for a in assets):
                return
            time.sleep(1)
        raise StackError(
            f"the watcher of asset {asset_name} was not registered within {timeout:.0f} s: is landing_mode 'event' "
            f"and cognito_stream_to_s3 unpaused? See {self.log_file}"
        )

    def admin_password(self) -> str | None:
        path = self.cfg.airflow_home / "simple_auth_manager_passwords.json.generated"
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return str(data.get("admin")) if data.get("admin") else None


class TrickleService(Service):
    """The activity simulator in trickle mode (``make up``): a few changes per second, so the UI shows
    runs going green and rows arriving."""

    name = "trickle"
    port_setting = ""
    rate = 2.0

    @property
    def port(self) -> int:
        return 0

    def healthy(self) -> bool:
        return self.pid() is not None

    def check_port(self) -> None:
        return None

    def start(self) -> None:
        argv = [_python(), "-m", "local.simulator", "--trickle", "--rate", str(self.rate), "--identities", "25"]
        env = {**_child_env(self.cfg), **stack_environment(self.cfg)}
        start_detached(argv, pid_file=self.pid_file, log_file=self.log_file, env=env, cwd=REPO)


OUR_DAGS = (
    "cognito_streams_configure",
    "cognito_bulk_publish",
    "cognito_stream_to_s3",
    "cognito_s3_to_redshift",
    "cognito_reconcile",
    "cognito_pipeline_health",
)


def _pg_bin_path() -> Path:
    """Where the pgserver wheel keeps PostgreSQL's binaries (imported quietly: pgserver warns
    about XDG_RUNTIME_DIR at import time, which is noise here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _child_env(cfg: StackConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LOCAL_CREDENTIALS)
    # airflow standalone (and our scripts) start `airflow ...` subprocesses by name.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("AWS_DEFAULT_REGION", cfg.region)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return env


def pipeline_variable(cfg: StackConfig, pool_ids: list[str]) -> dict[str, object]:
    """The ``cognito_pipeline`` Variable for the local stack."""
    variable: dict[str, object] = {
        "identity_pool_ids": pool_ids,
        "stream_name": cfg.stream_name,
        "stream_shards": cfg.stream_shards,
        "publish_role_arn": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/cognito-streams-publish",
        "manage_publish_role": True,
        "landing_bucket": cfg.landing_bucket,
        "landing_prefix": "cognito-streams",
        "warehouse_schema": "cognito_sync",
        "copy_iam_role_arn": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/cognito-streams-redshift-copy",
    }
    variable.update(cfg.extra_variable)
    return variable


def stack_environment(cfg: StackConfig, pool_ids: list[str] | None = None) -> dict[str, str]:
    """Every variable a shell, a test or ``airflow`` needs to use this stack."""
    if pool_ids is None:
        pool_ids = _read_pool_ids(cfg)
    conn_aws = {"conn_type": "aws", "extra": {"region_name": cfg.region}}
    conn_wh = warehouse_connection(cfg)
    env = {
        "AWS_ENDPOINT_URL": cfg.aws_endpoint,
        "AWS_ENDPOINT_URL_COGNITO_SYNC": cfg.emulator_endpoint,
        **LOCAL_CREDENTIALS,
        "AWS_DEFAULT_REGION": cfg.region,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn_aws),
        "AIRFLOW_CONN_REDSHIFT_DEFAULT": json.dumps(conn_wh),
        "AIRFLOW_VAR_COGNITO_PIPELINE": json.dumps(pipeline_variable(cfg, pool_ids)),
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        "CS_STATE_DIR": str(cfg.state_dir),
        "CS_WAREHOUSE_DSN": cfg.warehouse_dsn(),
        "CS_WAREHOUSE": cfg.warehouse,
        "CS_REDSHIFT_DSN": cfg.redshift_dsn(),
        # The Redshift emulator for analysts' tools, as docs/analysts.md's Python example reads them.
        **redshift_client_environment(cfg),
        # A psql that matches the server, present even where no PostgreSQL client is installed.
        "PSQL": str(_pg_bin_path() / "psql"),
        # The health report task also writes the page here (besides S3).
        "COGNITO_STREAMS_REPORT_DIR": str(cfg.state_dir),
    }
    if cfg.executor == "celery":
        from local.celery_stack import celery_environment

        env.update(celery_environment(cfg))
    return env


def redshift_client_environment(cfg: StackConfig) -> dict[str, str]:
    """``REDSHIFT_HOST`` ... ``REDSHIFT_SSL``: the Redshift emulator, in the variables docs/analysts.md's Python
    example (pandas over SQLAlchemy's Redshift dialect) reads."""
    return {
        "REDSHIFT_HOST": cfg.host,
        "REDSHIFT_PORT": str(cfg.redshift_port),
        "REDSHIFT_DATABASE": REDSHIFT_DB,
        "REDSHIFT_USER": REDSHIFT_USER,
        "REDSHIFT_PASSWORD": REDSHIFT_PASSWORD,
        "REDSHIFT_SSL": "false",
    }


def warehouse_connection(cfg: StackConfig) -> dict[str, object]:
    """The ``redshift_default`` connection: the PostgreSQL stand-in, or (``CS_WAREHOUSE=redshift``) the Redshift
    emulator through redshift-connector (``ssl`` off: the emulator speaks plain TCP on loopback)."""
    if cfg.warehouse == "redshift":
        return {
            "conn_type": "redshift",
            "host": cfg.host,
            "port": cfg.redshift_port,
            "login": REDSHIFT_USER,
            "password": REDSHIFT_PASSWORD,
            "schema": REDSHIFT_DB,
            "extra": {"ssl": False},
        }
    return {"conn_type": "postgres", "host": cfg.host, "port": cfg.pg_port, "login": "postgres", "schema": WAREHOUSE_DB}


def _pool_file(cfg: StackConfig) -> Path:
    return cfg.state_dir / "pools.json"


def _read_pool_ids(cfg: StackConfig) -> list[str]:
    try:
        return list(json.loads(_pool_file(cfg).read_text()))
    except (FileNotFoundError, ValueError):
        return []


def bootstrap_aws(cfg: StackConfig, endpoint: str | None = None) -> list[str]:
    """Create what the local AWS side needs: the landing bucket, the identity pools and the publish
    role's permissions boundary (what an administrator creates before ``manage_publish_role``).

    Idempotent: existing resources (found by name) are kept. Returns the pool ids.
    """
    import boto3

    kwargs = {"endpoint_url": endpoint or cfg.aws_endpoint, "region_name": cfg.region}
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", **kwargs, **creds)
    existing_buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if cfg.landing_bucket not in existing_buckets:
        s3.create_bucket(Bucket=cfg.landing_bucket)
    identity = boto3.client("cognito-identity", **kwargs, **creds)
    pools = {
        p["IdentityPoolName"]: p["IdentityPoolId"] for p in identity.list_identity_pools(MaxResults=60)["IdentityPools"]
    }
    ids = []
    for name in cfg.pool_names:
        if name not in pools:
            pools[name] = identity.create_identity_pool(IdentityPoolName=name, AllowUnauthenticatedIdentities=True)[
                "IdentityPoolId"
            ]
        ids.append(pools[name])
    iam = boto3.client("iam", **kwargs, **creds)
    ensure_copy_role(iam, cfg)
    _ensure_publish_boundary(iam, cfg.region)
    _pool_file(cfg).parent.mkdir(parents=True, exist_ok=True)
    _pool_file(cfg).write_text(json.dumps(ids))
    return ids


def ensure_copy_role(iam: object, cfg: StackConfig) -> str:
    """The role Redshift's COPY assumes (``cognito-streams-redshift-copy``), trusting ``redshift.amazonaws.com``,
    with the repository's policy documents (for the stack's landing bucket); created when missing. Returns its
    ARN."""
    iam_dir = REPO / "plugins" / "cognito_streams" / "iam"
    client: Any = iam
    try:
        return str(client.get_role(RoleName=COPY_ROLE_NAME)["Role"]["Arn"])
    except client.exceptions.NoSuchEntityException:
        pass
    trust = (iam_dir / "redshift-copy-role.trust.json").read_text()
    policy = string.Template((iam_dir / "redshift-copy-role.policy.json").read_text()).substitute(
        Partition="aws", Bucket=cfg.landing_bucket, Prefix=str(pipeline_variable(cfg, [])["landing_prefix"])
    )
    arn = str(client.create_role(RoleName=COPY_ROLE_NAME, AssumeRolePolicyDocument=trust)["Role"]["Arn"])
    client.put_role_policy(RoleName=COPY_ROLE_NAME, PolicyName="landing-read", PolicyDocument=policy)
    return arn


def _ensure_publish_boundary(iam: Any, region: str) -> None:
    """The default permissions boundary of the publish role (``PUBLISH_BOUNDARY_NAME``).

    In AWS it allows PutRecord(s) on the one stream (``iam_cli``); locally every test makes its own
    stream under the same default name, so it allows them on every stream of the local account."""
    arn = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:policy/{PUBLISH_BOUNDARY_NAME}"
    try:
        iam.get_policy(PolicyArn=arn)
        return
    except iam.exceptions.NoSuchEntityException:
        pass
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AtMostPutSyncRecordsOnTheLocalStreams",
                "Effect": "Allow",
                "Action": ["kinesis:PutRecord", "kinesis:PutRecords"],
                "Resource": f"arn:aws:kinesis:{region}:{LOCAL_ACCOUNT_ID}:stream/*",
            }
        ],
    }
    iam.create_policy(PolicyName=PUBLISH_BOUNDARY_NAME, PolicyDocument=json.dumps(document))


def write_env_file(cfg: StackConfig, env: dict[str, str]) -> Path:
    """Write ``stack.env`` as ``export`` lines a POSIX shell can source."""
    lines = ["# Written by `make stack-up`; `source` it to reach the local stack.", ""]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    cfg.env_file.parent.mkdir(parents=True, exist_ok=True)
    cfg.env_file.write_text("\n".join(lines) + "\n")
    return cfg.env_file


def migrate_airflow(cfg: StackConfig, env: dict[str, str]) -> None:
    """``airflow db migrate`` on the stack's SQLite metadata DB (fast when already current)."""
    cfg.airflow_home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(  # noqa: S603
        [_venv_bin("airflow"), "db", "migrate"],
        env={**_child_env(cfg), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"`airflow db migrate` failed:\n{proc.stderr[-3000:]}")


class Stack:
    """The whole local stack; ``up`` is idempotent and ``down`` leaves no process behind."""

    def __init__(self, cfg: StackConfig | None = None) -> None:
        self.cfg = cfg or StackConfig.from_env()
        self.moto = MotoService(self.cfg)
        self.postgres = PostgresService(self.cfg)
        self.emulator = EmulatorService(self.cfg)
        self.redshift = RedshiftEmulatorService(self.cfg)
        from local.celery_stack import CeleryAirflow, RedisBroker

        self.standalone = AirflowService(self.cfg)
        self.celery = CeleryAirflow(self.cfg)
        self.broker = RedisBroker(self.cfg)
        self.airflow: AirflowService = self.celery if self.cfg.executor == "celery" else self.standalone
        self.trickle = TrickleService(self.cfg)

    def services(self) -> list[Service]:
        services: list[Service] = [self.moto, self.postgres]
        if EmulatorService.available():
            services.append(self.emulator)
        services.append(self.redshift)
        if self.cfg.executor == "celery":
            services.append(self.broker)
        return services

    def up(
        self, *, migrate: bool = True, echo: bool = False, emulator: bool = True, redshift: bool | None = None
    ) -> dict[str, str]:
        """Start every service, create the AWS resources, write stack.env; return its variables.

        ``emulator=False`` leaves the Cognito Sync emulator out (tests start it on demand). ``redshift``: start the
        Redshift emulator (default: always from the command line; ``False`` leaves it to be started on demand,
        which ``warehouse == "redshift"`` never does).
        """
        for directory in (self.cfg.state_dir, self.cfg.log_dir, self.cfg.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        want_redshift = True if redshift is None or self.cfg.warehouse == "redshift" else redshift
        wanted = [
            s
            for s in self.services()
            if (emulator or s is not self.emulator) and (want_redshift or s is not self.redshift)
        ]
        for service in wanted:
            t0 = time.monotonic()
            state = service.ensure_running()
            if echo:
                print(f"  {service.name:<9} {state:<16} port {service.port}  ({time.monotonic() - t0:.1f} s)")
        pool_ids = bootstrap_aws(self.cfg)
        env = stack_environment(self.cfg, pool_ids)
        write_env_file(self.cfg, env)
        if self.cfg.executor == "celery":
            from local.celery_stack import ensure_databases

            ensure_databases(self.cfg)
        if migrate:
            t0 = time.monotonic()
            migrate_airflow(self.cfg, env)
            if echo:
                print(f"  airflow   metadata DB migrated  ({time.monotonic() - t0:.1f} s)")
        return env

    def down(self, *, echo: bool = False) -> None:
        """Stop Airflow (if running) and every service; verify the ports are closed."""
        everything = [self.trickle, self.celery, self.standalone, self.broker, self.emulator, self.redshift]
        everything += [self.postgres, self.moto]
        for service in everything:
            was = service.pid()
            service.stop()
            if echo and was is not None:
                print(f"  {service.name:<9} stopped (pid {was})")
        still = [s for s in everything if s.pid() is not None]
        if still:
            raise StackError("could not stop: " + ", ".join(f"{s.name} (pid {s.pid()})" for s in still))

    def status(self) -> list[tuple[str, int, int | None, bool]]:
        """(name, port, pid, healthy) for each service."""
        rows = []
        for service in [*self.services(), self.airflow]:
            pid = service.pid()
            rows.append((service.name, service.port, pid, pid is not None and service.healthy()))
        return rows

    def airflow_up(self, *, echo: bool = False, alive: bool = True) -> None:
        """``airflow standalone`` with our DAGs and plugins; with ``alive``, the DAGs unpaused and the
        simulator trickling changes in. Prints where and how to log in."""
        state = self.airflow.ensure_running()
        if echo:
            print(f"  airflow   {state:<16} port {self.airflow.port}")
        if alive:
            # Configure first (it creates the stream and enables Cognito Streams), so that the other
            # DAGs' first runs find a working pipeline instead of going red.
            first, *others = OUR_DAGS
            self.airflow.unpause((first,))
            outcome = self.airflow.wait_for_first_run(first)
            if echo:
                print(f"  {first}: first run {outcome}")
            unpaused = self.airflow.unpause(tuple(others))
            state = self.trickle.ensure_running()
            if echo:
                print(f"  DAGs      unpaused: {', '.join([first, *unpaused])}")
                mode = os.environ.get("AIRFLOW__COGNITO_STREAMS__LANDING_MODE", "event")
                print(
                    f"  landing   {mode} mode"
                    + (" (a watcher in the triggerer starts a run when records arrive)" if mode == "event" else "")
                )
                print(f"  trickle   {state:<16} ~{self.trickle.rate:g} changes/s (log: {self.trickle.log_file})")
        if echo:
            print(
                f"Airflow UI: http://{self.cfg.host}:{self.cfg.airflow_port}  user: admin  "
                f"password: {self.airflow.admin_password() or '(see ' + str(self.cfg.airflow_home) + ')'}"
            )

    def listening_ports(self) -> list[int]:
        """Ports of ours that still accept connections (for tests of ``down``)."""
        ports = [
            self.cfg.moto_port, self.cfg.pg_port, self.cfg.emulator_port, self.cfg.redshift_port, self.cfg.airflow_port,
            self.cfg.broker_port,
        ]  # fmt: skip
        return [p for p in ports if port_is_listening(p, self.cfg.host)]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m local.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "airflow-up", "airflow-down", "clean", "bootstrap"])
    parser.add_argument("--no-migrate", action="store_true", help="skip `airflow db migrate` on up")
    parser.add_argument(
        "--aws-endpoint", help="bootstrap: the AWS endpoint to create the bucket and pools in (docker-compose)"
    )
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        if args.command == "up":
            print(f"Starting the local stack (state in {stack.cfg.state_dir})")
            stack.up(migrate=not args.no_migrate, echo=True)
            print(f"Ready. In your shell: source {stack.cfg.env_file}")
        elif args.command == "down":
            stack.down(echo=True)
            print("Local stack stopped.")
        elif args.command == "status":
            for name, port, pid, healthy in stack.status():
                state = "healthy" if healthy else ("running, not answering" if pid else "stopped")
                print(f"  {name:<9} port {port:<6} pid {pid or '-':<8} {state}")
        elif args.command == "airflow-up":
            if not stack.cfg.env_file.exists():
                stack.up(echo=True)
            stack.airflow_up(echo=True)
        elif args.command == "airflow-down":
            stack.airflow.stop()
        elif args.command == "bootstrap":
            # For docker-compose's init container: create the AWS side, print the Variable.
            pool_ids = bootstrap_aws(stack.cfg, endpoint=args.aws_endpoint)
            print(json.dumps(pipeline_variable(stack.cfg, pool_ids)))
        elif args.command == "clean":
            stack.down(echo=True)
            shutil.rmtree(stack.cfg.state_dir, ignore_errors=True)
            print(f"Removed {stack.cfg.state_dir}")
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

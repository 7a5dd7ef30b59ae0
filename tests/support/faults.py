"""The fault suite's harness: one isolated pipeline per scenario, app activity that remembers every
change it made, real process deaths, service restarts, and the final proof (figures).

A :class:`Scenario` has its own identity pool, Kinesis stream, publish role, landing prefix and
warehouse schema (all in the ``cognito_pipeline`` Variable it exports), so scenarios never see each
other's data on the shared session stack. It drives the pipeline's own task bodies (the functions
the DAGs' tasks call), in this process or — to kill them for real — in a child process
(``tests/faults/crash_child.py``), and proves the outcome with :meth:`Scenario.verify`:

- *changes lost*: changes made in Cognito Sync whose version is missing from the warehouse's
  history (``record_changes`` / ``dataset_deletes``); a change made while streaming was off (Cognito
  dropped it) counts as lost only if the warehouse has no newer version of its key either;
- *wrong rows*: the reconciliation's mismatches (``cognito_streams.reconcile.Reconciler``, every
  identity, ``settle_seconds=0``, nothing in flight) plus failing data-quality checks.

Both must be 0. Each scenario's figures are kept in :data:`FIGURES`; ``tests/faults/conftest.py``
prints them at the end of the run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cognito_streams.settings import PipelineSettings, parse_settings
from local.stack import LOCAL_ACCOUNT_ID, REPO, Stack
from tests.support.warehouse import landing_prefix

LAND_DAG = "cognito_stream_to_s3"
SNAPSHOT_DAG = "cognito_snapshot"
#: crash_child's exit status when the task ended without reaching its kill point.
NOT_REACHED = 3
DATASETS = ("prefs", "game_state", "profile")
KEYS = tuple(f"k{i}" for i in range(6))


@dataclass
class Figures:
    """What one scenario did and proved."""

    scenario: str
    fault: str
    changes_made: int = 0
    kinesis_records_read: int = 0
    process_kills: int = 0
    service_restarts: int = 0
    faults_injected: int = 0
    failed_task_runs: int = 0
    keys_checked: int = 0
    changes_lost: int = 0
    wrong_rows: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


#: Every scenario's figures in this test session (printed by tests/faults/conftest.py).
FIGURES: list[Figures] = []


@dataclass(frozen=True)
class MadeChange:
    """One change an app made in Cognito Sync (a key's new version, or a dataset delete)."""

    identity_id: str
    dataset_name: str
    record_key: str | None  # None: a dataset delete
    op: str  # replace | remove | dataset_remove
    sync_count: int
    last_modified_ms: int  # 0 for a dataset delete (found by count: one dataset_deletes row per delete)
    streamed: bool  # False: made while the pool's streaming was off (Cognito never sent it)


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch (naive values are UTC, as the warehouse stores them)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


class Activity:
    """Apps syncing through boto3 ``cognito-sync`` (ListRecords, UpdateRecords, DeleteDataset), one
    device per identity, remembering every change the service accepted."""

    def __init__(self, cognito_sync: Any, pool_id: str, identities: list[str], seed: int) -> None:
        self.client = cognito_sync
        self.pool_id = pool_id
        self.identities = identities
        self.rng = random.Random(seed)
        self.made: list[MadeChange] = []
        self.live_datasets: set[tuple[str, str]] = set()
        self.streaming = True

    def sync(self, *, remove_share: float = 0.2, large_bytes: int = 0) -> None:
        """One sync of one dataset: 1-3 keys replaced or removed."""
        identity = self.rng.choice(self.identities)
        dataset = self.rng.choice(DATASETS)
        listed = self.client.list_records(
            IdentityPoolId=self.pool_id, IdentityId=identity, DatasetName=dataset, LastSyncCount=0
        )
        current = {r["Key"]: r for r in listed.get("Records", [])}
        patches = []
        for key in self.rng.sample(KEYS, self.rng.randint(1, 3)):
            record = current.get(key)
            count = int(record["SyncCount"]) if record else 0
            if record is not None and record.get("Value") is not None and self.rng.random() < remove_share:
                patches.append({"Op": "remove", "Key": key, "SyncCount": count})
                continue
            value = f"{key}={self.rng.randint(0, 10**9)} ✓"
            if large_bytes:
                value += " " + "x" * large_bytes
            patches.append({"Op": "replace", "Key": key, "Value": value, "SyncCount": count})
        answer = self.client.update_records(
            IdentityPoolId=self.pool_id,
            IdentityId=identity,
            DatasetName=dataset,
            SyncSessionToken=listed["SyncSessionToken"],
            RecordPatches=patches,
        )
        ops: dict[str, str] = {str(p["Key"]): str(p["Op"]) for p in patches}
        for r in answer.get("Records", []):
            self.made.append(
                MadeChange(
                    identity,
                    dataset,
                    r["Key"],
                    ops[r["Key"]],
                    int(r["SyncCount"]),
                    epoch_ms(r["LastModifiedDate"]),
                    self.streaming,
                )
            )
        self.live_datasets.add((identity, dataset))

    def delete_dataset(self) -> bool:
        """Delete one dataset that exists (False when there is none)."""
        if not self.live_datasets:
            return False
        identity, dataset = self.rng.choice(sorted(self.live_datasets))
        self.client.delete_dataset(IdentityPoolId=self.pool_id, IdentityId=identity, DatasetName=dataset)
        self.live_datasets.discard((identity, dataset))
        self.made.append(MadeChange(identity, dataset, None, "dataset_remove", 0, 0, self.streaming))
        return True

    def run(
        self, syncs: int, *, remove_share: float = 0.2, delete_share: float = 0.0, large_share: float = 0.0
    ) -> None:
        """``syncs`` syncs, with a dataset delete instead of a sync ``delete_share`` of the time and a
        value too large for an inline record ``large_share`` of the time."""
        for _ in range(syncs):
            if delete_share and self.rng.random() < delete_share and self.delete_dataset():
                continue
            large = 2048 if large_share and self.rng.random() < large_share else 0
            self.sync(remove_share=remove_share, large_bytes=large)

    @property
    def changes(self) -> int:
        return len(self.made)


@dataclass
class ChildRun:
    """A pipeline task run in a child process."""

    returncode: int
    log: Path

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


class Scenario:
    """One isolated pipeline on the session stack (see the module docstring)."""

    def __init__(
        self,
        name: str,
        fault: str,
        stack: Stack,
        aws: Callable[[str], Any],
        tmp_dir: Path,
        *,
        shards: int = 1,
        identities: int = 4,
        seed: int = 0,
        **overrides: Any,
    ) -> None:
        self.name = name
        self.stack = stack
        self.aws = aws
        self.tmp_dir = tmp_dir
        self.started = time.monotonic()
        self.figures = Figures(scenario=name, fault=fault)
        suffix = uuid.uuid4().hex[:8]
        identity = aws("cognito-identity")
        self.pool_id = identity.create_identity_pool(
            IdentityPoolName=f"faults_{name}_{suffix}"[:128], AllowUnauthenticatedIdentities=True
        )["IdentityPoolId"]
        self.identities = [identity.get_id(IdentityPoolId=self.pool_id)["IdentityId"] for _ in range(identities)]
        base = json.loads(os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"])
        self.variable: dict[str, Any] = {
            **base,
            "identity_pool_ids": [self.pool_id],
            "stream_name": f"faults-{name}-{suffix}"[:128],
            "stream_shards": shards,
            "publish_role_arn": f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/faults/publish-{suffix}",
            "manage_publish_role": True,
            "landing_prefix": landing_prefix(f"faults/{name}-{suffix}"),
            "warehouse_schema": f"faults_{suffix}",
            "run_max_seconds": 20,
            "checkpoint_lease_seconds": 120,
            "bulk_publish_poll_seconds": 0.5,
            "s3url_fetch_retries": 1,
            **overrides,
        }
        self.settings: PipelineSettings = parse_settings(self.variable)
        self.activity = Activity(aws("cognito-sync"), self.pool_id, self.identities, seed)
        self.runs = 0
        self.landing_read = 0
        #: Landing runs whose tries all failed: their leases live on until an operator clears the task.
        self.uncleared: list[str] = []

    # -- settings ------------------------------------------------------------------------------
    def export(self) -> None:
        """Put this scenario's Variable where the pipeline reads it (this process and its children)."""
        os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"] = json.dumps(self.variable)

    def override(self, **changes: Any) -> None:
        """Change settings from now on."""
        self.variable.update(changes)
        self.settings = parse_settings(self.variable)
        self.export()

    # -- setup -------------------------------------------------------------------------------
    def configure(self) -> None:
        """What ``cognito_streams_configure`` does: the stream, the publish role, the pool streaming."""
        from cognito_streams.configure.configurator import StreamsConfigurator

        configurator = StreamsConfigurator(self.settings)
        configurator.ensure_stream()
        configurator.ensure_publish_role()
        (report,) = configurator.configure_pools()
        if report.action not in ("configure", "unchanged", "reenable"):
            raise AssertionError(f"pool {self.pool_id} could not be configured: {report}")
        self.activity.streaming = True

    def flush(self) -> None:
        """Every change answered so far is on the stream."""
        from local.emulator.control import EmulatorControl

        EmulatorControl(self.stack.cfg.emulator_endpoint).flush()

    # -- the pipeline, in this process -----------------------------------------------------------
    def run_id(self) -> str:
        self.runs += 1
        return f"faults__{self.name}__{self.runs}"

    def land(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """One ``cognito_stream_to_s3`` run's task bodies: plan, then land each readable shard."""
        from cognito_streams.landing import tasks

        run_id = run_id or self.run_id()
        planned = tasks.plan({}, LAND_DAG, run_id, self.settings)
        outcomes = [tasks.land(shard, LAND_DAG, run_id, self.settings) for shard in planned]
        self.landing_read += sum(int(o["records_read"]) for o in outcomes)
        return outcomes

    def ensure_schema(self) -> None:
        from cognito_streams.landing_zone import load as loader

        loader.ensure_schema(self.settings)

    def load(self) -> dict[str, Any]:
        """One ``load_batches`` task body: every landed batch not loaded yet."""
        from cognito_streams.landing_zone import load as loader

        loader.ensure_schema(self.settings)
        report = loader.load_landing_zone(self.settings)
        # As the DAG's check_failed_batches: a run that set a batch aside is red.
        loader.raise_for_failed(report, self.settings.warehouse_schema)
        return report.as_dict()

    def snapshot(self, run_id: str | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One ``cognito_snapshot`` run's task bodies (no export): check the Params, page, walk every unit,
        load. ``run_id``: the run to resume (its cursor), else a new one."""
        from cognito_streams.snapshot import tasks

        run_id = run_id or self.run_id()
        run = tasks.parse_params(params or {}, run_id, self.settings)
        units = tasks.page(run, run_id, self.settings)
        walked = [tasks.walk(unit, self.settings) for unit in units]
        loaded = tasks.load(run, self.settings)
        return {"run": run, "units": units, "walked": walked, "loaded": loaded}

    def land_run(self, retries: int = 2) -> list[dict[str, Any]] | None:
        """One landing DAG run as Airflow makes it under a fault: a failed task is retried in the same
        run (same lease owner) up to ``retries`` times; a run whose tries all fail is remembered for
        :meth:`catch_up`, which clears it (as an operator does) before anything else."""
        run_id = self.run_id()
        for _ in range(retries + 1):
            outcome = self.attempt(lambda: self.land(run_id))
            if outcome is not None:
                return outcome  # type: ignore[no-any-return]
        self.uncleared.append(run_id)
        return None

    def load_run(self, retries: int = 2) -> dict[str, Any] | None:
        """One loading DAG run under a fault: the load task retried up to ``retries`` times."""
        for _ in range(retries + 1):
            outcome = self.attempt(self.load)
            if outcome is not None:
                return outcome  # type: ignore[no-any-return]
        return None

    def catch_up(self, max_rounds: int = 12) -> None:
        """Clear the failed landing runs (rerun in their own run: their leases are theirs), then land
        and load until a landing run reads nothing and every shard is at its tip."""
        while self.uncleared:
            self.land(self.uncleared.pop(0))
        for _ in range(max_rounds):
            outcomes = self.land()
            self.load()
            if all(
                int(o["records_read"]) == 0 and o["status"] in ("caught_up", "finished", "shard_ended")
                for o in outcomes
            ):
                return
        raise AssertionError(f"{self.name}: the pipeline did not catch up in {max_rounds} rounds")

    def attempt(self, step: Callable[[], Any]) -> Any:
        """Run a pipeline step that may fail under a fault; count a failure (the rerun comes later)."""
        try:
            return step()
        except Exception as err:
            self.figures.failed_task_runs += 1
            self.figures.notes.append(f"{type(err).__name__}: {str(err).splitlines()[0][:160]}")
            return None

    # -- the pipeline, in a child process that is killed -------------------------------------
    def kill_in_child(
        self, task: str, kill_at: str, *, nth: int = 1, run_id: str | None = None, must_die: bool = True
    ) -> bool:
        """Run ``task`` (``land`` | ``load`` | ``snapshot``) in a child process that SIGKILLs itself at ``kill_at``
        (see tests/faults/crash_child.py); asserts that it really died there (``must_die``), or else
        that it ended normally because the point was not reached. Returns whether it was killed."""
        spec = {
            "task": task,
            "kill_at": kill_at,
            "nth": nth,
            "variable": self.variable,
            "dag_id": SNAPSHOT_DAG if task == "snapshot" else LAND_DAG,
            "run_id": run_id or self.run_id(),
        }
        spec_file = self.tmp_dir / f"{self.name}-{uuid.uuid4().hex[:6]}.json"
        spec_file.write_text(json.dumps(spec))
        log = spec_file.with_suffix(".log")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")])}
        with open(log, "wb") as out:
            proc = subprocess.run(
                [sys.executable, "-m", "tests.faults.crash_child", str(spec_file)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=180,
                check=False,
            )
        result = ChildRun(proc.returncode, log)
        not_reached = proc.returncode == NOT_REACHED and not must_die
        if not result.killed and not not_reached:
            raise AssertionError(
                f"{self.name}: the {task} task was meant to die at {kill_at} (#{nth}) but exited with "
                f"{proc.returncode}:\n{result.tail()}"
            )
        self.figures.process_kills += int(result.killed)
        return result.killed

    # -- the proof -------------------------------------------------------------------------------
    def reconcile(self) -> dict[str, Any]:
        """``cognito_reconcile``'s logic over every identity, nothing left to settle."""
        from cognito_streams.reconcile.reconciler import Reconciler
        from cognito_streams.warehouse.connect import open_warehouse
        from local.emulator.control import EmulatorControl

        emulator_now = datetime.fromtimestamp(
            EmulatorControl(self.stack.cfg.emulator_endpoint).clock()["now_ms"] / 1000, UTC
        )
        # Judge every change: "now" is after the last change on either clock.
        now = max(datetime.now(UTC), emulator_now) + timedelta(seconds=1)
        # The warehouse the pipeline's connection points at (the stand-in or the Redshift emulator).
        with open_warehouse(self.settings) as wh:
            summary = Reconciler(self.settings, wh).run(
                f"faults-{self.name}-{uuid.uuid4().hex[:6]}",
                pool_ids=[self.pool_id],
                sample_size=None,
                settle_seconds=0,
                max_mismatches=0,
                now=now,
            )
            checks = wh.quality_checks(datetime(1970, 1, 1))
        result = summary.as_dict()
        result["quality_failures"] = sum(c.failing for c in checks)
        return result

    def lost_changes(self) -> list[MadeChange]:
        """Changes made whose version the warehouse does not have (see the module docstring)."""
        from tests.support.warehouse import connect

        schema = self.settings.warehouse_schema
        with connect() as conn:
            versions = {
                (i, d, k, int(s), epoch_ms(t))
                for i, d, k, s, t in conn.execute(
                    f"select identity_id, dataset_name, record_key, sync_count, last_modified_at "
                    f"from {schema}.record_changes where identity_pool_id = %s",
                    (self.pool_id,),
                )
            }
            current = {
                (i, d, k): epoch_ms(t)
                for i, d, k, t in conn.execute(
                    f"select identity_id, dataset_name, record_key, last_modified_at from {schema}.records "
                    "where identity_pool_id = %s",
                    (self.pool_id,),
                )
            }
            deletes: dict[tuple[str, str], list[int]] = {}
            for i, d, t in conn.execute(
                f"select identity_id, dataset_name, deleted_at from {schema}.dataset_deletes "
                "where identity_pool_id = %s",
                (self.pool_id,),
            ):
                deletes.setdefault((i, d), []).append(epoch_ms(t))
        lost: list[MadeChange] = []
        deletes_seen = {k: len(v) for k, v in deletes.items()}
        for c in self.activity.made:
            if c.record_key is None:
                # A dataset delete is one row of dataset_deletes per delete of that dataset.
                key = (c.identity_id, c.dataset_name)
                if deletes_seen.get(key, 0) > 0:
                    deletes_seen[key] -= 1
                elif c.streamed:
                    lost.append(c)
                continue
            if (c.identity_id, c.dataset_name, c.record_key, c.sync_count, c.last_modified_ms) in versions:
                continue
            newer = current.get((c.identity_id, c.dataset_name, c.record_key), -1) > c.last_modified_ms
            if c.streamed or not newer:
                lost.append(c)
        return lost

    def verify(self) -> Figures:
        """The proof: 0 changes lost, 0 wrong rows. Records and returns the figures."""
        self.flush()
        result = self.reconcile()
        lost = self.lost_changes()
        f = self.figures
        f.changes_made = self.activity.changes
        f.kinesis_records_read = self.landing_read
        f.keys_checked = int(result["keys_checked"])
        f.changes_lost = len(lost)
        f.wrong_rows = int(result["mismatches"]) + int(result["quality_failures"])
        f.seconds = round(time.monotonic() - self.started, 1)
        FIGURES.append(f)
        problems = []
        if result["in_flight"]:
            problems.append(f"{result['in_flight']} key(s) still in flight: the reconciliation did not judge them")
        if lost:
            problems.append(f"{len(lost)} change(s) lost, e.g. {[asdict(c) for c in lost[:3]]}")
        if f.wrong_rows:
            problems.append(
                f"{f.wrong_rows} wrong row(s): {result['by_kind']}, quality failures {result['quality_failures']}"
            )
        if f.keys_checked == 0 or f.changes_made == 0:
            problems.append("nothing was checked: the scenario made no change")
        assert not problems, f"{self.name}: " + "; ".join(problems)
        return f

    def cleanup(self) -> None:
        """Drop the warehouse schema and the stream (the session stack stays lean)."""
        from tests.support.warehouse import drop_schema

        drop_schema(self.settings.warehouse_schema)
        kinesis = self.aws("kinesis")
        with suppress(kinesis.exceptions.ResourceNotFoundException):
            kinesis.delete_stream(StreamName=self.settings.stream_name, EnforceConsumerDeletion=True)


@contextmanager
def scenario(
    name: str, fault: str, stack: Stack, aws: Callable[[str], Any], tmp_dir: Path, **kwargs: Any
) -> Iterator[Scenario]:
    """A configured :class:`Scenario` whose Variable is exported for the block; cleaned up after."""
    saved = os.environ.get("AIRFLOW_VAR_COGNITO_PIPELINE")
    sc = Scenario(name, fault, stack, aws, tmp_dir, **kwargs)
    sc.export()
    try:
        sc.configure()
        yield sc
    finally:
        if saved is None:
            os.environ.pop("AIRFLOW_VAR_COGNITO_PIPELINE", None)
        else:
            os.environ["AIRFLOW_VAR_COGNITO_PIPELINE"] = saved
        sc.cleanup()


# -- services ------------------------------------------------------------------------------------


def restart_postgres(stack: Stack) -> None:
    """Stop PostgreSQL the way a crash does (``pg_ctl stop -m immediate``: no checkpoint, every
    session cut), then start it again (crash recovery on start)."""
    from local.stack import _pg_bin_path

    pg = stack.postgres
    subprocess.run(
        [str(_pg_bin_path() / "pg_ctl"), "-D", str(stack.cfg.pgdata), "-m", "immediate", "-w", "-t", "30", "stop"],
        capture_output=True,
        check=True,
        user=pg._run_as(),
        group=pg._run_as(),
    )
    pg.start()


def kill_emulator(stack: Stack) -> None:
    """SIGKILL the session's Cognito Sync emulator (no clean shutdown)."""
    from local.procs import pid_alive

    pid = stack.emulator.pid()
    assert pid is not None, "the emulator is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    stack.emulator.pid_file.unlink(missing_ok=True)


def start_emulator(stack: Stack, timeout: float = 30.0) -> None:
    """Start the session's emulator again on its state folder (and port).

    The port was picked from the ephemeral range: while the emulator was down, an outgoing connection
    of this busy machine may hold it as its local port for a moment. Wait for it, as an operator would.
    """
    from local.procs import StackError

    deadline = time.monotonic() + timeout
    while True:
        try:
            stack.emulator.ensure_running()
            return
        except StackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)

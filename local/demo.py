"""``make demo``: the whole pipeline end to end on the local stack, then proof that it is right.

Steps: start the stack -> configure Cognito Streams (``cognito_streams_configure``) -> simulate app
activity (updates, removes, dataset deletes, large S3Url updates) -> bulk publish
(``cognito_bulk_publish``: every dataset sent again, so duplicates really happen) -> land and load
until caught up (``cognito_stream_to_s3``, ``cognito_s3_to_redshift``) -> reconcile the warehouse
with Cognito Sync (``cognito_reconcile``) -> write the health report -> print a summary.

Exits non-zero on any mismatch or failed DAG run. The DAGs run in this process with ``dag.test()``,
their logs go to ``.local/logs/demo.log``; what you see is progress with counts.

With ``CS_WAREHOUSE=redshift`` the warehouse is the Redshift emulator: the summary then also reads the emulator's
log (``.local/logs/redshift.log``) and fails the demo unless it shows redshift-connector sessions and the COPY
statements the emulator executed from S3.

    python -m local.demo [--identities 300] [--changes 3000] [--keep-running]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.dag_results import return_values
from local.procs import StackError
from local.redshift.logread import EmulatorLog, log_size, read_emulator_log
from local.stack import REPO, Stack, StackConfig

DAG_IDS = (
    "cognito_streams_configure",
    "cognito_bulk_publish",
    "cognito_stream_to_s3",
    "cognito_s3_to_redshift",
    "cognito_reconcile",
)


class DemoError(RuntimeError):
    """The demo found a problem: a DAG run failed or the warehouse does not match Cognito."""


@dataclass
class DemoConfig:
    """Sizes and switches of one demo run."""

    identities: int = 300
    changes: int = 3000
    large_share: float = 0.02
    remove_share: float = 0.12
    delete_share: float = 0.03
    seed: int | None = None
    keep_running: bool = False
    max_landing_rounds: int = 30
    quiet: bool = False


@dataclass
class DemoResult:
    """What the demo did and found (the summary's numbers)."""

    simulated: dict[str, Any] = field(default_factory=dict)
    landing: dict[str, int] = field(default_factory=dict)
    loading: dict[str, int] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None
    seconds: float = 0.0
    #: the warehouse ``redshift_default`` pointed at (``CS_WAREHOUSE``)
    warehouse: str = "postgres"
    #: with the Redshift emulator: what its log shows of this demo (clients, COPYs)
    redshift_log: EmulatorLog | None = None
    redshift_log_file: Path | None = None

    @property
    def mismatches(self) -> int:
        return int(self.reconciliation.get("mismatches", -1))


class Progress:
    """Numbered steps with timings, on stdout."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.n, self.quiet = total, 0, quiet
        self.t0 = time.monotonic()
        self.step_t0 = self.t0

    def step(self, text: str) -> None:
        self.n += 1
        self.step_t0 = time.monotonic()
        self.say(f"[{self.n}/{self.total}] {text}")

    def detail(self, text: str) -> None:
        self.say(f"      {text}")

    def done(self, text: str = "done") -> None:
        self.say(f"      {text} ({time.monotonic() - self.step_t0:.1f} s)")

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


@contextlib.contextmanager
def captured_output(log_file: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (Airflow's task logs) to ``log_file`` for the block."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


class DagRunner:
    """Runs our DAGs in this process with ``dag.test()`` (the stack's Airflow home and DB)."""

    def __init__(self, log_file: Path) -> None:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        self.log_file = log_file
        with captured_output(log_file):
            bag = DagBag(dag_folder=str(REPO / "dags"))
            if bag.import_errors:
                raise DemoError(f"DAG files failed to import: {bag.import_errors}")
            DagBundlesManager().sync_bundles_to_db()
            sync_bag_to_db(bag, "dags-folder", None)
        self.dags = bag.dags
        for dag in self.dags.values():
            for task in dag.tasks:
                task.retries = 0  # a demo reports a failure at once, not after the retry delay

    def run(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, allowed_failures: frozenset[str] = frozenset()
    ) -> tuple[Any, dict[str, Any]]:
        """One run; returns the DagRun and its tasks' return values (by task id, mapped ones as lists).
        Raises :class:`DemoError` if the run failed, unless every failed task is in ``allowed_failures``
        (the caller then reads the outcome from the return values)."""
        from airflow.utils.state import DagRunState

        dag = self.dags[dag_id]
        with captured_output(self.log_file):
            run = dag.test(logical_date=datetime.now(UTC), run_conf=conf)
        results = return_values(run)
        if run.state != DagRunState.SUCCESS:
            failed = {ti.task_id for ti in run.get_task_instances() if ti.state in ("failed", "upstream_failed")}
            if not failed or not failed <= allowed_failures:
                raise DemoError(f"{dag_id} run failed (tasks: {', '.join(sorted(failed)) or '?'}); see {self.log_file}")
        return run, results


def _warehouse_counts(dsn: str, schema: str, since: datetime) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(table rows, landing counts of this demo, loading counts of this demo) from the warehouse."""
    import psycopg

    from cognito_streams.core.sql_text import ReportingSql

    sql = ReportingSql(schema, "postgres")
    naive_since = since.replace(tzinfo=None)
    with psycopg.connect(dsn) as conn:
        rows = {str(t): int(n) for t, n in conn.execute(sql.report("table_rows")).fetchall()}
        landing_row = conn.execute(sql.report("landing_since"), (naive_since,)).fetchone()
        loading_row = conn.execute(sql.report("loading_since"), (naive_since,) * 3).fetchone()
    assert landing_row is not None and loading_row is not None  # noqa: S101 - aggregates always return a row
    read, landed, rejected, batches = landing_row
    staged, versions, deletes = loading_row
    landing = {"read": int(read), "landed": int(landed), "rejected": int(rejected), "batches": int(batches)}
    loading = {
        "change_rows_staged": int(staged),
        "new_versions": int(versions),
        "new_dataset_deletes": int(deletes),
        "duplicates_absorbed": int(staged) - int(versions) - int(deletes),
    }
    return rows, landing, loading


def reconcile_step(runner: DagRunner, result: DemoResult) -> dict[str, Any]:
    """Run ``cognito_reconcile`` on every identity with nothing left in flight; its counts go to
    ``result.reconciliation``. Mismatches make the run red (``check_mismatches``) but are the demo's
    verdict to give (:func:`conclude`), with the report written first; any other failure raises."""
    _, out = runner.run(
        "cognito_reconcile",
        {"sample_size": None, "settle_seconds": 0, "depth": "records"},
        allowed_failures=frozenset({"check_mismatches"}),
    )
    if not out.get("reconcile"):
        raise DemoError(f"cognito_reconcile returned no counts; see {runner.log_file}")
    result.reconciliation = out["reconcile"]
    return out


def run_demo(stack: Stack, config: DemoConfig, *, env: dict[str, str]) -> DemoResult:
    """The demo flow on a running ``stack`` whose variables (``env``) are in ``os.environ``."""
    from local.emulator.control import EmulatorControl
    from local.simulator import SimulationConfig, simulate

    progress = Progress(total=7, quiet=config.quiet)
    result = DemoResult(warehouse=env.get("CS_WAREHOUSE") or "postgres")
    started = datetime.now(UTC)
    redshift_log_from = log_size(stack.redshift.log_file)
    log_file = stack.cfg.log_dir / "demo.log"
    variable = json.loads(env["AIRFLOW_VAR_COGNITO_PIPELINE"])
    pools, schema = list(variable["identity_pool_ids"]), variable.get("warehouse_schema", "cognito_sync")
    runner = DagRunner(log_file)
    ctl = EmulatorControl(env["AWS_ENDPOINT_URL_COGNITO_SYNC"])

    progress.step("Configuring Cognito Streams (cognito_streams_configure)")
    _, out = runner.run("cognito_streams_configure")
    progress.detail(
        f"stream: {out['ensure_stream']['action']}, {out['ensure_stream']['open_shards']} shard(s); "
        f"role: {out['ensure_publish_role']['action']}; pools: {out['configure_pools']['counts']}"
    )
    progress.done()

    progress.step(f"Simulating app activity: {config.identities} identities, {config.changes:,} changes")
    seed = config.seed if config.seed is not None else int(started.timestamp())
    with captured_output(log_file):
        stats = simulate(
            SimulationConfig(
                identity_pool_ids=tuple(pools),
                identities_per_pool=max(1, config.identities // len(pools)),
                changes=config.changes,
                seed=seed,
                workers=4,
                processes=1,
                large_share=config.large_share,
                remove_share=config.remove_share,
                delete_share=config.delete_share,
            )
        )
    ctl.flush()
    result.simulated = {
        k: getattr(stats, k)
        for k in (
            "changes",
            "replaces",
            "removes",
            "dataset_deletes",
            "syncs",
            "large_updates",
            "conflicts",
            "stream_records_expected",
            "stream_records_expected_s3url",
        )
    }
    progress.detail(
        f"{stats.changes:,} changes ({stats.replaces:,} replaces, {stats.removes:,} removes, "
        f"{stats.dataset_deletes:,} dataset deletes) in {stats.syncs:,} syncs; "
        f"{stats.large_updates} large (S3Url) updates; {stats.stream_records_expected:,} stream records"
    )
    progress.done()

    progress.step("Bulk publish: Cognito sends every dataset again (cognito_bulk_publish)")
    _, out = runner.run("cognito_bulk_publish")
    for pool in out.get("bulk_publish", []):
        progress.detail(
            f"pool {pool['identity_pool_id']}: {pool['action']}"
            + (f" (next eligible {pool.get('next_eligible_at')})" if pool["action"] == "skipped" else "")
        )
    ctl.flush()
    progress.done()

    progress.step("Landing Kinesis -> S3 and loading S3 -> warehouse until caught up")
    for round_no in range(1, config.max_landing_rounds + 1):
        _, landed = runner.run("cognito_stream_to_s3")
        shards = landed.get("land_shard", [])
        read = sum(int(s.get("records_read", 0)) for s in shards)
        lag = max((int(s.get("lag_ms") or 0) for s in shards), default=0)
        _, loaded = runner.run("cognito_s3_to_redshift")
        counts = loaded.get("load_batches") or {}
        progress.detail(
            f"round {round_no}: read {read:,} Kinesis records from {len(shards)} shard(s), lag {lag} ms; "
            f"loaded {counts.get('batches', 0)} batch(es)"
        )
        if read == 0 and lag == 0:
            break
    else:
        raise DemoError(f"landing did not catch up in {config.max_landing_rounds} rounds; see {log_file}")
    progress.done()

    progress.step("Reconciling the warehouse with Cognito Sync (cognito_reconcile)")
    out = reconcile_step(runner, result)
    progress.detail(
        f"{result.reconciliation.get('identities', 0)} identities, "
        f"{result.reconciliation.get('datasets_checked', 0):,} datasets and "
        f"{result.reconciliation.get('keys_checked', 0):,} keys checked, "
        f"mismatches: {result.reconciliation.get('mismatches')}"
    )
    progress.done()

    progress.step("Writing the pipeline-health report")
    report = out.get("write_report") or {}
    result.report_path = Path(report["local_path"]) if report.get("local_path") else None
    progress.detail(f"{result.report_path} (and {report.get('s3_url')})")
    progress.done()

    progress.step("Summary")
    # The warehouse redshift_default points at: the stand-in, or the Redshift emulator (CS_WAREHOUSE=redshift).
    dsn = env["CS_REDSHIFT_DSN"] if result.warehouse == "redshift" else env["CS_WAREHOUSE_DSN"]
    result.tables, result.landing, result.loading = _warehouse_counts(dsn, schema, started)
    if result.warehouse == "redshift":
        result.redshift_log_file = stack.redshift.log_file
        result.redshift_log = read_emulator_log(stack.redshift.log_file, redshift_log_from)
    result.seconds = time.monotonic() - progress.t0
    return result


def warehouse_shell(cfg: StackConfig) -> str:
    """The shell command that opens the warehouse in ``psql``: the one from the pgserver wheel
    (``PSQL`` in stack.env), since a fresh machine may have no PostgreSQL client."""
    dsn = "$CS_REDSHIFT_DSN" if cfg.warehouse == "redshift" else "$CS_WAREHOUSE_DSN"
    return f'source {shlex.quote(str(cfg.env_file))} && "$PSQL" "{dsn}"'


def _redshift_lines(result: DemoResult) -> str:
    """The summary's lines on the Redshift emulator's log (nothing with the PostgreSQL stand-in)."""
    rl = result.redshift_log
    if result.warehouse != "redshift" or rl is None:
        return ""
    clients = "; ".join(f"{n} x {client}" for client, n in rl.clients.most_common()) or "none"
    example = f"\n{'':33}e.g. {rl.copies[0][1]}" if rl.copies else ""
    return (
        f"  Redshift emulator sessions     {sum(rl.clients.values()):>9,}  ({clients})\n"
        f"  COPY from S3 it executed       {len(rl.copies):>9,}  ({rl.rows_copied:,} rows; "
        f"{len(rl.copies_failed)} failed, {len(rl.refused)} statement(s) refused){example}\n"
        f"{'':33}(the emulator's log: {result.redshift_log_file})\n"
    )


def print_summary(result: DemoResult, cfg: StackConfig) -> None:
    """The numbers, and where to look next."""
    s, la, lo, rc = result.simulated, result.landing, result.loading, result.reconciliation
    kinds = (
        f"{s.get('replaces', 0):,} replaces, {s.get('removes', 0):,} removes, {s.get('dataset_deletes', 0):,} deletes"
    )
    compared = (
        f"{rc.get('datasets_checked', 0):,} datasets and {rc.get('keys_checked', 0):,} keys "
        f"of {rc.get('identities', 0)} identities"
    )
    landed = f"landed {la.get('landed', 0):,} + rejected {la.get('rejected', 0):,}"
    tables = "\n".join(f"{'':33}{k:<22}{v:>9,}" for k, v in result.tables.items()).lstrip()
    print(f"""
  changes made in Cognito Sync   {s.get("changes", 0):>9,}  ({kinds}, {s.get("large_updates", 0):,} large)
  Kinesis records read           {la.get("read", 0):>9,}  ({landed})
  change rows staged             {lo.get("change_rows_staged", 0):>9,}
  duplicates absorbed            {lo.get("duplicates_absorbed", 0):>9,}  (bulk publish resends, at-least-once delivery)
  rows per table (all runs)      {tables}
  mismatches                     {result.mismatches:>9,}  ({compared} compared with Cognito Sync)
{_redshift_lines(result)}  took                           {result.seconds:>8.0f} s

Where to look next:
  - the report:         {result.report_path}
  - the Airflow UI:     make up   (then http://{cfg.host}:{cfg.airflow_port}, user admin)
  - the warehouse:      {warehouse_shell(cfg)}
                        (with the stack running: make demo DEMO_ARGS=--keep-running, or make stack-up;
                        sample queries: docs/analysts.md)
  - the DAG logs:       {cfg.log_dir / "demo.log"}
""")


def conclude(result: DemoResult, cfg: StackConfig) -> int:
    """Print the summary and the verdict; the exit code: 0 only when nothing differs from Cognito (and, on the
    Redshift emulator, when its log shows redshift-connector and the COPYs from S3: the Redshift path was taken)."""
    print_summary(result, cfg)
    if result.warehouse == "redshift":
        problems = (result.redshift_log or EmulatorLog()).problems()
        if problems:
            print(
                f"FAILED: CS_WAREHOUSE=redshift, but the Redshift emulator's log ({result.redshift_log_file}) shows "
                f"{'; '.join(problems)}: the DAGs did not take the Redshift path",
                file=sys.stderr,
            )
            return 1
    if result.mismatches != 0:
        by_kind = ", ".join(f"{n} {k}" for k, n in (result.reconciliation.get("by_kind") or {}).items() if n)
        print(
            f"FAILED: {result.mismatches} mismatch(es) between the warehouse and Cognito Sync ({by_kind}); "
            f"see reconciliation_results for run {result.reconciliation.get('run_id')} and the report",
            file=sys.stderr,
        )
        return 1
    print("OK: the warehouse matches Cognito Sync exactly.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=DemoConfig.identities)
    parser.add_argument("--changes", type=int, default=DemoConfig.changes)
    parser.add_argument("--large-share", type=float, default=DemoConfig.large_share)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-running", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args(argv)
    config = DemoConfig(
        identities=args.identities,
        changes=args.changes,
        large_share=args.large_share,
        seed=args.seed,
        keep_running=args.keep_running,
    )
    stack = Stack()
    was_running = stack.moto.pid() is not None
    print(f"cognito-streams demo: the whole pipeline on the local stack (state in {stack.cfg.state_dir})")
    print("[0/7] Starting the local stack (moto, Cognito Sync emulator, PostgreSQL, Redshift emulator)", flush=True)
    try:
        env = stack.up(migrate=True, echo=True)
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ.update(env)
    code = 0
    try:
        code = conclude(run_demo(stack, config, env=env), stack.cfg)
    except DemoError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        code = 1
    finally:
        if config.keep_running or was_running:
            print(f"The stack keeps running (`make stack-down` stops it; `source {stack.cfg.env_file}` to use it).")
        else:
            stack.down()
    return code


if __name__ == "__main__":
    sys.exit(main())

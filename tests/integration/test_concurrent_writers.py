"""Writers that can run at once, at SERIALIZABLE isolation (Redshift's default; the stand-in's READ COMMITTED
default hides conflicts): each takes its table lock first, so overlapping transactions serialise instead of one
being aborted (Redshift's error 1023, PostgreSQL's SQLSTATE 40001), and no retry is needed.

Two writers run in threads on their own connections. A gate holds each commit until the other writer is at its
own commit, has finished, or waits for a lock: the transactions overlap as much as their locks allow, every
time (no sleeps to hope for an overlap). Without the locks, both reach their commits with overlapping
snapshots and PostgreSQL aborts one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from cognito_streams.core.reconcile import Mismatch
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.warehouse.models import BulkPublishAttempt
from cognito_streams.warehouse.postgres import PostgresWarehouse
from tests.support.changes import change
from tests.support.warehouse import drop_schema, postgres_warehouse, query, unique_schema

pytestmark = pytest.mark.integration


class Gate:
    """Holds each participant's commits while another participant is still running outside a commit and not
    waiting for a lock."""

    def __init__(self) -> None:
        self.monitor = psycopg.connect(os.environ["CS_WAREHOUSE_DSN"], autocommit=True)
        self.pids: dict[str, int] = {}
        self.at_commit: set[str] = set()
        self.finished: set[str] = set()
        self.active = False
        self._lock = threading.Lock()

    def _waits_for_lock(self, pid: int) -> bool:
        with self._lock:
            row = self.monitor.execute("select wait_event_type from pg_stat_activity where pid = %s", (pid,)).fetchone()
        return bool(row and row[0] == "Lock")

    def hold(self, name: str) -> None:
        if not self.active:
            return
        self.at_commit.add(name)
        try:
            while True:
                others = [n for n in self.pids if n != name]
                if all(o in self.at_commit or o in self.finished or self._waits_for_lock(self.pids[o]) for o in others):
                    return
                time.sleep(0.005)
        finally:
            self.at_commit.discard(name)

    def close(self) -> None:
        self.monitor.close()


class GatedConnection:
    """A psycopg connection whose commit passes the gate first."""

    def __init__(self, conn: psycopg.Connection[Any], gate: Gate, name: str) -> None:
        self._conn, self._gate, self._name = conn, gate, name

    def commit(self) -> None:
        self._gate.hold(self._name)
        self._conn.commit()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._conn, attr)


@pytest.fixture
def gate(stack) -> Iterator[Gate]:  # type: ignore[no-untyped-def]
    g = Gate()
    yield g
    g.close()


def serializable(schema: str, gate: Gate, name: str) -> PostgresWarehouse:
    """A warehouse on its own SERIALIZABLE connection, its commits behind the gate."""
    conn = psycopg.connect(os.environ["CS_WAREHOUSE_DSN"], options="-c default_transaction_isolation=serializable")
    gate.pids[name] = conn.info.backend_pid
    return PostgresWarehouse(GatedConnection(conn, gate, name), schema)  # type: ignore[arg-type]


def run_both(gate: Gate, first: Callable[[], Any], second: Callable[[], Any]) -> list[BaseException]:
    """Run the two writers at once; their errors (none when both committed)."""
    errors: list[BaseException] = []

    def run(name: str, work: Callable[[], Any]) -> None:
        try:
            work()
        except BaseException as err:
            errors.append(err)
        finally:
            gate.finished.add(name)

    gate.active = True
    threads = [threading.Thread(target=run, args=(n, w)) for n, w in (("a", first), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer never finished (deadlock?)"
    return errors


@pytest.fixture
def schema(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as wh:
        yield wh.schema


def attempt(pool: str) -> BulkPublishAttempt:
    return BulkPublishAttempt(
        attempt_id=f"run-1/{pool}",
        identity_pool_id=pool,
        requested_at=datetime(2026, 3, 1, tzinfo=UTC),
        decision="start",
        status="IN_PROGRESS",
    )


def test_bulk_publish_tasks_of_two_pools_record_at_once(schema: str, gate: Gate) -> None:
    # GIVEN the mapped bulk-publish tasks of two pools, each with its own SERIALIZABLE session
    a, b = serializable(schema, gate, "a"), serializable(schema, gate, "b")
    # WHEN both record their attempt at the same time
    errors = run_both(
        gate,
        lambda: a.record_bulk_publish_attempt(attempt("us-east-1:aaaaaaaa-0000-4000-8000-000000000001")),
        lambda: b.record_bulk_publish_attempt(attempt("us-east-1:bbbbbbbb-0000-4000-8000-000000000002")),
    )
    # THEN both rows are there, and no transaction had to be run again
    assert errors == []
    assert query(a, "select count(*) from {schema}.bulk_publish_runs") == [(2,)]
    assert a.serialization_retries == b.serialization_retries == 0


def _record_run(wh: PostgresWarehouse, run_id: str) -> None:
    from cognito_streams.reconcile.reconciler import Reconciler, ReconcileSummary

    reconciler = object.__new__(Reconciler)  # the warehouse write alone: no Cognito clients needed
    reconciler.warehouse = wh
    reconciler.sql = ReportingSql(wh.schema, wh.engine)
    mismatch = Mismatch("pool", f"id-{run_id}", "ds", "k", "missing", "not in the warehouse", 1, None)
    reconciler._record(ReconcileSummary(run_id, datetime(2026, 3, 1, tzinfo=UTC)), [mismatch])


def test_two_reconciliation_runs_record_at_once(schema: str, gate: Gate) -> None:
    # GIVEN a manual reconciliation run beside the scheduled one
    a, b = serializable(schema, gate, "a"), serializable(schema, gate, "b")
    # WHEN both record their results at the same time
    errors = run_both(gate, lambda: _record_run(a, "manual"), lambda: _record_run(b, "scheduled"))
    # THEN both runs and their mismatches are recorded
    assert errors == []
    assert query(a, "select run_id from {schema}.reconciliation_runs order by 1") == [("manual",), ("scheduled",)]
    assert query(a, "select count(*) from {schema}.reconciliation_results") == [(2,)]
    assert a.serialization_retries == b.serialization_retries == 0


def test_two_merges_and_a_rebuild_serialise(schema: str, gate: Gate) -> None:
    # GIVEN two loaders (direct merges: the same transaction shape as a load) on different keys
    a, b = serializable(schema, gate, "a"), serializable(schema, gate, "b")
    # WHEN they merge at the same time, then a rebuild runs beside a merge
    errors = run_both(
        gate,
        lambda: a.merge_changes([change("coins", "1", 1, 0)]),
        lambda: b.merge_changes([change("level", "2", 1, 0, dataset="other")]),
    )
    errors += run_both(gate, a.rebuild_current_state, lambda: b.merge_changes([change("gems", "3", 1, 0)]))
    # THEN every change is there and nothing had to run again
    assert errors == []
    assert query(a, "select record_key from {schema}.records order by 1") == [("coins",), ("gems",), ("level",)]
    assert a.serialization_retries == b.serialization_retries == 0


def test_two_tasks_create_the_schema_at_once(stack, gate: Gate) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a warehouse schema that does not exist yet, and two tasks that both make sure it does (the loader's
    # ensure_schema, a bulk-publish task's)
    schema = unique_schema()
    a, b = serializable(schema, gate, "a"), serializable(schema, gate, "b")
    try:
        # WHEN both run at once
        errors = run_both(gate, a.ensure_schema, b.ensure_schema)
        # THEN both succeed and the migrations were applied once
        assert errors == []
        assert query(a, "select count(*) from {schema}.schema_migrations") == [(len(a.sql.library.migrations()),)]
    finally:
        drop_schema(schema)

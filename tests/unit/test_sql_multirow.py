"""Many rows go to the warehouse as multi-row INSERTs of bounded size, never one statement per row
(redshift-connector's ``executemany`` is one prepared INSERT per row)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from cognito_streams.core.sql_text import (
    MAX_BYTES_PER_STATEMENT,
    MAX_PARAMS_PER_STATEMENT,
    MAX_ROWS_PER_STATEMENT,
    ReportingSql,
    SqlTextError,
    multi_row_insert,
    row_chunks,
)
from cognito_streams.warehouse.redshift import RedshiftWarehouse
from tests.support.changes import change
from tests.support.fake_redshift import FakeRedshift, code

ROLE = "arn:aws:iam::123456789012:role/copy"
SQL = ReportingSql("cognito_sync", "redshift")
INSERTS = {
    "insert_stage_change": SQL.insert_stage_change(),
    "insert_stage_file": SQL.insert_stage_file(),
    "insert_stage_batch": SQL.insert_stage_batch(),
    "insert_reconciliation_result": SQL.insert_reconciliation_result(),
    "insert_stage_bulk_publish": SQL.insert_stage_bulk_publish(),
}


@pytest.mark.parametrize("name", sorted(INSERTS))
def test_multi_row_insert_repeats_the_row(name: str) -> None:
    # GIVEN a one-row INSERT of sql/ WHEN made into a 3-row INSERT
    one = INSERTS[name]
    three = multi_row_insert(one, 3)
    # THEN it is one INSERT with three rows of the same placeholders, in the same columns
    tree = sqlglot.parse_one(three, read="redshift")
    assert isinstance(tree, exp.Insert)
    rows = tree.expression.expressions
    assert len(rows) == 3 and len({r.sql() for r in rows}) == 1
    assert three.count("%s") == 3 * one.count("%s")


def test_multi_row_insert_refuses_what_it_cannot_repeat() -> None:
    with pytest.raises(SqlTextError):
        multi_row_insert("select 1", 2)
    with pytest.raises(SqlTextError):
        multi_row_insert(INSERTS["insert_stage_file"], 0)


def test_row_chunks_respect_rows_params_and_bytes() -> None:
    wide = [(i, *("x",) * 21) for i in range(3_000)]  # 22 columns, like stg_changes
    chunks = list(row_chunks(wide))
    assert [len(c) for c in chunks] == [1_000, 1_000, 1_000]
    assert all(len(c) * 22 <= MAX_PARAMS_PER_STATEMENT for c in chunks)
    very_wide = [tuple(range(100))] * 1_000
    assert max(len(c) for c in row_chunks(very_wide)) == MAX_PARAMS_PER_STATEMENT // 100
    big = [("v" * 1_000_000, i) for i in range(10)]  # 1 MB values
    sizes = [len(c) for c in row_chunks(big)]
    assert sum(sizes) == 10 and max(sizes) * 1_000_000 <= MAX_BYTES_PER_STATEMENT
    huge = [("v" * (MAX_BYTES_PER_STATEMENT + 1),)]  # a row over the budget still goes, alone
    assert [len(c) for c in row_chunks(huge)] == [1]
    assert list(row_chunks([])) == []
    assert MAX_ROWS_PER_STATEMENT == 1_000


def _answers(sql: str, params: Any) -> list[tuple[Any, ...]] | None:
    if "from stg_latest_deletes" in sql and sql.startswith("select count(*)"):
        return [(0,)]
    if sql.startswith("select v.versions_staged"):
        return [(0, 0, 0, 0, 0, 0)]
    return None


def test_merge_changes_stages_rows_by_multi_row_inserts() -> None:
    # GIVEN 2,500 changes to merge directly on the Redshift path (a connection without executemany)
    conn = FakeRedshift(respond=_answers)
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    changes = [change(f"k{i}", str(i), 1, 0, index=i) for i in range(2_500)]
    # WHEN merged
    wh.merge_changes(changes)
    # THEN the stage got them in three INSERT statements, every row's values bound, none executed alone
    inserts = [e for e in conn.log if code(e.sql).startswith("insert into stg_changes")]
    assert [len(e.params) // 22 for e in inserts] == [1_000, 1_000, 500]
    assert sum(len(e.params) for e in inserts) == 2_500 * 22
    assert conn.commits == 1


def test_reconciliation_results_go_in_multi_row_inserts() -> None:
    from cognito_streams.core.reconcile import Mismatch
    from cognito_streams.reconcile.reconciler import Reconciler, ReconcileSummary

    conn = FakeRedshift()
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    reconciler = object.__new__(Reconciler)  # the write alone: no Cognito clients needed
    reconciler.warehouse = wh
    reconciler.sql = ReportingSql("cognito_sync", "redshift")
    summary = ReconcileSummary("run-1", datetime(2026, 3, 1, tzinfo=UTC))
    mismatches = [
        Mismatch("pool", f"id-{i}", "ds", "k", "missing", "not in the warehouse", 1, None) for i in range(1_200)
    ]
    reconciler._record(summary, mismatches)
    inserts = [e for e in conn.log if "insert into cognito_sync.reconciliation_results" in e.sql]
    assert [len(e.params) // 10 for e in inserts] == [1_000, 200]

"""Free text going into the warehouse is cut to its column's width in BYTES (Redshift's VARCHAR counts bytes),
at a character boundary (issue 17 item 1): bulk publish failure messages and reasons, reconciliation details."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from cognito_streams.core.reconcile import Mismatch
from cognito_streams.core.sql_text import ReportingSql
from cognito_streams.reconcile.reconciler import Reconciler, ReconcileSummary
from cognito_streams.warehouse.models import BulkPublishAttempt

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def attempt(**fields: Any) -> BulkPublishAttempt:
    return BulkPublishAttempt(
        attempt_id="run/us-east-1:0f5b", identity_pool_id="us-east-1:0f5b", requested_at=T0, decision="start",
        status="FAILED", **fields,
    )  # fmt: skip


def test_a_long_non_ascii_failure_message_and_reason_are_cut_to_their_columns_bytes() -> None:
    # GIVEN Cognito's failure message and our reason, in three-byte characters, within the widths in characters
    message, reason = "€" * 3000, "€" * 1000
    # WHEN recorded as a bulk publish attempt
    row = attempt(failure_message=message, reason=reason)
    # THEN each is the longest whole-character prefix that fits its column in bytes (4096, 1024)
    assert row.failure_message == "€" * 1365 and len(row.failure_message.encode()) == 4095
    assert row.reason == "€" * 341 and len(row.reason.encode()) == 1023
    # AND longer text is cut too, rather than refused
    assert attempt(failure_message="x" * 10_000).failure_message == "x" * 4096


def test_an_identifier_wider_than_its_column_is_refused_not_cut() -> None:
    with pytest.raises(
        ValueError, match=r"attempt_id\n.*is 300 UTF-8 bytes long; bulk_publish_runs.attempt_id holds at most 256"
    ):
        BulkPublishAttempt(
            attempt_id="é" * 150, identity_pool_id="p", requested_at=T0, decision="start", status="REQUESTED"
        )


class Cursor:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def execute(self, sql: str, params: Any = None) -> None:
        if "insert into" in sql and "reconciliation_results" in sql:
            self.values.extend(params or ())


class Warehouse:
    schema, engine = "cognito_sync", "redshift"

    def __init__(self) -> None:
        self.cursor = Cursor()

    def write(self, what: str, locks: str, work: Callable[[Cursor], Any]) -> Any:
        return work(self.cursor)


def test_a_reconciliation_detail_is_cut_to_4096_bytes() -> None:
    # GIVEN a mismatch whose detail (it quotes record keys and dataset names) is long in non-ASCII characters
    detail = "key " + "€" * 2000
    reconciler = Reconciler.__new__(Reconciler)
    reconciler.warehouse = Warehouse()  # type: ignore[assignment]
    reconciler.sql = ReportingSql("cognito_sync", "redshift")
    mismatch = Mismatch("us-east-1:0f5b", "us-east-1:1a", "prefs", "k", "stale_value", detail)
    # WHEN the run's results are written
    reconciler._record(ReconcileSummary(run_id="r", checked_at=T0), [mismatch])
    # THEN the detail fits reconciliation_results.detail (varchar(4096): bytes), cut at a character boundary
    values = reconciler.warehouse.cursor.values  # type: ignore[attr-defined]
    written = next(v for v in values if isinstance(v, str) and v.startswith("key "))
    assert len(written.encode()) <= 4096 and detail.startswith(written) and len(written) == 4 + 1364

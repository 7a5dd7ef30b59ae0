"""A transaction that loses a serialization conflict (Redshift's error 1023, as redshift-connector raises it) is
rolled back and run again whole, a bounded number of times, each time with a log line; other errors are not
retried. Every writer takes its table lock as its first statement."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redshift_connector

from cognito_streams.warehouse.base import SERIALIZATION_ATTEMPTS, is_create_race, is_serialization_failure
from cognito_streams.warehouse.models import BulkPublishAttempt, WarehouseError
from cognito_streams.warehouse.redshift import RedshiftWarehouse
from tests.support.fake_redshift import FakeRedshift

ROLE = "arn:aws:iam::123456789012:role/copy"
#: What redshift-connector raises for Redshift's error 1023 (the server's fields as the exception's argument).
ERROR_1023 = {
    "S": "ERROR",
    "C": "XX000",
    "M": "1023",
    "D": "Serializable isolation violation on table - 118450, transactions forming the cycle are: 5361, 5362 "
    "(pid:1073938444)",
}


def attempt() -> BulkPublishAttempt:
    return BulkPublishAttempt(
        attempt_id="run-1/pool",
        identity_pool_id="us-east-1:aaaaaaaa-0000-4000-8000-000000000001",
        requested_at=datetime(2026, 3, 1, tzinfo=UTC),
        decision="start",
        status="IN_PROGRESS",
    )


def failing_merges(times: int) -> Any:
    left = [times]

    def respond(sql: str, params: Any) -> None:
        if sql.startswith("merge into") and left[0] > 0:
            left[0] -= 1
            raise redshift_connector.ProgrammingError(ERROR_1023)

    return respond


def test_error_1023_is_retried_whole_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a Redshift session whose MERGE loses a serialization conflict once
    conn = FakeRedshift(respond=failing_merges(1))
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    # WHEN a bulk publish attempt is recorded
    with caplog.at_level(logging.WARNING):
        wh.record_bulk_publish_attempt(attempt())
    # THEN the transaction was rolled back and run again from its lock, and committed once
    locks = conn.statements("lock table cognito_sync.bulk_publish_runs")
    assert len(locks) == 2 and conn.rollbacks == 1 and conn.commits == 1
    assert wh.serialization_retries == 1
    # AND the log says what conflicted and that it runs again
    assert "bulk publish attempt run-1/pool on schema cognito_sync conflicted" in caplog.text
    assert "attempt 1 of 3" in caplog.text


def test_retries_are_bounded_and_the_error_says_what_to_do() -> None:
    conn = FakeRedshift(respond=failing_merges(SERIALIZATION_ATTEMPTS))
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    with pytest.raises(WarehouseError, match=r"failed 3 times in a row .* STL_TR_CONFLICT") as err:
        wh.record_bulk_publish_attempt(attempt())
    assert isinstance(err.value.__cause__, redshift_connector.ProgrammingError)
    assert conn.commits == 0 and len(conn.statements("lock table")) == SERIALIZATION_ATTEMPTS


def test_other_errors_are_not_retried() -> None:
    def respond(sql: str, params: Any) -> None:
        if sql.startswith("merge into"):
            raise redshift_connector.ProgrammingError({"M": 'column "x" does not exist', "C": "42703"})

    conn = FakeRedshift(respond=respond)
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    with pytest.raises(redshift_connector.ProgrammingError):
        wh.record_bulk_publish_attempt(attempt())
    assert len(conn.statements("lock table")) == 1 and wh.serialization_retries == 0


def test_serialization_failures_are_recognised() -> None:
    assert is_serialization_failure(redshift_connector.ProgrammingError(ERROR_1023))
    assert is_serialization_failure(psycopg.errors.SerializationFailure("could not serialize access"))
    assert not is_serialization_failure(redshift_connector.ProgrammingError({"M": "1024", "D": "other"}))
    assert not is_serialization_failure(ValueError("1023 rows"))
    assert is_create_race(psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"))
    assert not is_create_race(psycopg.errors.SyntaxError("syntax error"))


def _answers(sql: str, params: Any) -> list[tuple[Any, ...]] | None:
    if sql.startswith("select count(*)") and "stg_latest_deletes" in sql:
        return [(0,)]
    if sql.startswith("select v.versions_staged"):
        return [(0, 0, 0, 0, 0, 0)]
    return None


def test_every_writer_locks_first() -> None:
    # GIVEN every writer of the warehouse class on a Redshift session
    conn = FakeRedshift(respond=_answers)
    wh = RedshiftWarehouse(conn, "cognito_sync", copy_iam_role_arn=ROLE)
    wh.record_bulk_publish_attempt(attempt())
    wh.merge_changes([])
    wh.rebuild_current_state()
    wh.ensure_schema()
    # THEN each transaction that writes a table of the schema starts with a LOCK (its snapshot is then taken
    # after the lock is held), except the bootstrap, whose "create ... if not exists" is retried instead
    writes = ("merge into cognito_sync.", "insert into cognito_sync.", "delete from cognito_sync.", "alter table")
    firsts = [t[0] for t in conn.transactions() if any(s.startswith(writes) for s in t)]
    assert firsts == [
        "lock table cognito_sync.bulk_publish_runs",
        "lock table cognito_sync.loaded_batches",
        "lock table cognito_sync.loaded_batches",
        "lock table cognito_sync.schema_migrations",
    ]

"""The Warehouse on real PostgreSQL: versioned schema, the bulk-publish bookkeeping other DAGs write,
the data-quality checks, and the one switch between engines (the connection's conn_type)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cognito_streams.warehouse.connect import open_warehouse
from cognito_streams.warehouse.models import BulkPublishAttempt, DataQualityError, MigrationError, WarehouseError
from cognito_streams.warehouse.postgres import PostgresWarehouse
from tests.support.changes import change, dataset_remove
from tests.support.warehouse import connect, pipeline_settings, postgres_warehouse, query, unique_schema

pytestmark = pytest.mark.integration

TABLES = {
    "records", "record_changes", "dataset_deletes", "datasets", "loaded_batches", "loaded_files",
    "rejected_records", "bulk_publish_runs", "schema_migrations",
}  # fmt: skip


def test_schema_is_created_once_and_upgrades_are_idempotent(stack) -> None:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as wh:
        # GIVEN a schema created by ensure_schema (in the fixture)
        tables = {
            r[0]
            for r in query(wh, "select table_name from information_schema.tables where table_schema = %s", (wh.schema,))
        }
        # THEN it has the contract's tables and the analysts' view, and the ledger names every migration file
        assert tables >= TABLES | {"live_records"}
        applied = query(wh, "select version, name from {schema}.schema_migrations order by 1")
        assert applied[:2] == [(1, "warehouse_tables"), (2, "bulk_publish_reason")]
        assert applied == [(m.version, m.name) for m in wh.sql.library.migrations()]
        # WHEN it runs again THEN nothing is applied
        assert wh.ensure_schema() == []


def test_an_edited_migration_is_refused(stack) -> None:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as wh:
        query(wh, "update {schema}.schema_migrations set checksum = 'edited' where version = 1")
        with pytest.raises(MigrationError, match=r"V001__warehouse_tables.sql changed after it was applied"):
            wh.ensure_schema()


def test_a_warehouse_newer_than_the_code_is_refused(stack) -> None:  # type: ignore[no-untyped-def]
    with postgres_warehouse() as wh:
        query(wh, "insert into {schema}.schema_migrations values (999, 'future', 'x', now())")
        with pytest.raises(MigrationError, match=r"has migrations \[999\] .* deploy the newer code"):
            wh.ensure_schema()


def test_bulk_publish_attempts_are_upserted_by_id(stack) -> None:  # type: ignore[no-untyped-def]
    pool = "us-east-1:0f5b2a4e-7c1d-4a3b-9e2f-1a2b3c4d5e6f"
    requested = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with postgres_warehouse() as wh:
        # GIVEN an attempt recorded when requested, then again when it ended (the same id)
        started = BulkPublishAttempt(
            attempt_id="run-1/pool", identity_pool_id=pool, requested_at=requested, decision="start",
            status="IN_PROGRESS", started_at=requested, dag_run_id="run-1", reason="no bulk publish has run",
        )  # fmt: skip
        wh.record_bulk_publish_attempt(started)
        done = started.model_copy(
            update={"status": "SUCCEEDED", "completed_at": requested + timedelta(hours=2),
                    "next_eligible_at": requested + timedelta(hours=26)}
        )  # fmt: skip
        wh.record_bulk_publish_attempt(done)
        wh.record_bulk_publish_attempt(done)  # a retried task writes the same state again
        later = started.model_copy(update={"attempt_id": "run-2/pool", "requested_at": requested + timedelta(days=1)})
        wh.record_bulk_publish_attempt(later)
        # THEN one row per attempt, newest first, with the last state written
        attempts = wh.bulk_publish_attempts(pool)
        assert [a.attempt_id for a in attempts] == ["run-2/pool", "run-1/pool"]
        assert attempts[1].status == "SUCCEEDED" and attempts[1].completed_at == datetime(2026, 3, 1, 14)
        assert attempts[1].updated_at is not None and attempts[1].reason == "no bulk publish has run"
        assert wh.bulk_publish_attempts("us-east-1:00000000-0000-4000-8000-000000000000") == []


def test_quality_checks_pass_on_a_merged_state_and_fail_with_the_numbers(stack) -> None:  # type: ignore[no-untyped-def]
    since = datetime.now(UTC) - timedelta(minutes=1)
    with postgres_warehouse() as wh:
        # GIVEN a merged state
        wh.merge_changes([change("a", "1", 1, 0), change("b", "2", 1, 0, index=1), dataset_remove(2, 10, dataset="x")])
        assert all(r.ok for r in wh.check_quality(since))
        # WHEN a dataset's live count and a file's staged count are wrong
        query(wh, "update {schema}.datasets set live_record_count = 5 where dataset_name = 'game_state'")
        query(
            wh,
            "insert into {schema}.loaded_files values ('s3://b/f.parquet', 's3://b/d.json', 'changes', "
            "'s3://b/f.manifest', 10, 9, 100, now())",
        )
        # THEN the checks fail, naming each check with its count and an example
        with pytest.raises(DataQualityError) as err:
            wh.check_quality(since)
        assert "live_record_counts: 1 failing row(s)" in str(err.value)
        assert "staged_rows_match_manifests: 1 failing row(s), e.g. 's3://b/f.parquet'" in str(err.value)


def test_the_connection_type_picks_the_engine(stack, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings = pipeline_settings(warehouse_schema=unique_schema())
    # GIVEN the stack's postgres connection THEN the PostgreSQL warehouse
    with open_warehouse(settings) as wh:
        assert isinstance(wh, PostgresWarehouse)
    # GIVEN another conn_type THEN an error naming the connection and the supported types
    monkeypatch.setenv("AIRFLOW_CONN_REDSHIFT_DEFAULT", json.dumps({"conn_type": "mysql", "host": "localhost"}))
    with pytest.raises(WarehouseError, match=r"redshift_default has conn_type 'mysql'.*'redshift', 'postgres'"):
        open_warehouse(settings)
    # GIVEN Redshift without the COPY role THEN an error saying which setting to fill
    monkeypatch.setenv("AIRFLOW_CONN_REDSHIFT_DEFAULT", json.dumps({"conn_type": "redshift", "host": "x"}))
    with pytest.raises(WarehouseError, match="copy_iam_role_arn is not set"):
        open_warehouse(settings.model_copy(update={"copy_iam_role_arn": None}))


def test_a_second_loader_waits_for_the_first(stack) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with postgres_warehouse() as wh, connect() as other:
        # GIVEN another session in the middle of a load (it holds the loader's lock)
        other.execute(wh.sql.lock_loader())
        # WHEN this warehouse starts a load THEN it waits for the lock (a short timeout makes it visible)
        with wh.transaction() as cur:
            cur.execute("set lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            wh.merge_changes([change("a", "0", 1, 0)])
        with wh.transaction() as cur:
            cur.execute("set lock_timeout = 0")
        # AND once the other load ends, this one goes through
        other.rollback()
        wh.merge_changes([change("a", "1", 1, 0)])
        assert query(wh, "select count(*) from {schema}.records") == [(1,)]
